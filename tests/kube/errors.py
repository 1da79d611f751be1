"""Failures as the API server reports them: `kind: Status` bodies with the real texts.

Shapes follow k8s.io/apimachinery/pkg/api/errors: `{"kind": "Status", "apiVersion": "v1",
"metadata": {}, "status": "Failure", "message", "reason", "details", "code"}`; the resource is
named `plural.group` ("deployments.apps", or "pods" in the core group).
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An answer other than success; `status` is the body the server sends."""

    def __init__(
        self, code: int, reason: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }
        if details is not None:
            self.status["details"] = details


def qualified(plural: str, group: str) -> str:
    """`deployments.apps`, or `pods` for the core group."""
    return f"{plural}.{group}" if group else plural


def _details(plural: str, group: str, name: str | None) -> dict[str, Any]:
    """StatusDetails; empty fields are omitted as in the Go type (omitempty)."""
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["kind"] = plural
    return details


def not_found(plural: str, group: str, name: str) -> ApiError:
    message = f'{qualified(plural, group)} "{name}" not found'
    return ApiError(404, "NotFound", message, _details(plural, group, name))


def already_exists(plural: str, group: str, name: str) -> ApiError:
    message = f'{qualified(plural, group)} "{name}" already exists'
    return ApiError(409, "AlreadyExists", message, _details(plural, group, name))


def stale(plural: str, group: str, name: str) -> ApiError:
    """A write that carried an old metadata.resourceVersion (optimistic concurrency)."""
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": the object has'
        " been modified; please apply your changes to the latest version and try again",
        _details(plural, group, name),
    )


def invalid(kind: str, group: str, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """422 Invalid; causes are (reason, field, message) like FieldValueRequired."""
    kind_name = f"{kind}.{group}" if group else kind
    texts = [f"{field}: {message}" for _, field, message in causes]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    details: dict[str, Any] = {"name": name, "kind": kind}
    if group:
        details["group"] = group
    details["causes"] = [
        {"reason": reason, "message": message, "field": field} for reason, field, message in causes
    ]
    return ApiError(422, "Invalid", f'{kind_name} "{name}" is invalid: {joined}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(
    user: str, verb: str, plural: str, group: str, namespace: str | None, name: str | None
) -> ApiError:
    """RBAC's refusal: names the user, verb, resource, group and namespace."""
    subject = qualified(plural, group) + (f' "{name}"' if name else "")
    where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    return ApiError(
        403,
        "Forbidden",
        f'{subject} is forbidden: User "{user}" cannot {verb} resource "{plural}"'
        f' in API group "{group}" {where}',
        _details(plural, group, name),
    )


def quota_exceeded(
    plural: str, group: str, name: str, quota: str, requested: str, used: str, limited: str
) -> ApiError:
    """The ResourceQuota admission plugin's refusal (403 Forbidden)."""
    return ApiError(
        403,
        "Forbidden",
        f'{qualified(plural, group)} "{name}" is forbidden: exceeded quota: {quota},'
        f" requested: {requested}, used: {used}, limited: {limited}",
        _details(plural, group, name),
    )


def method_not_allowed(message: str = "the server does not allow this method") -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)
