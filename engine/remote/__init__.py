"""SSH hosts (asyncssh): connect, run a command with its output streamed, move files.

hosts.py    a host's connection settings, as the spec and a plan record them (no asyncssh)
connect.py  log in: host keys always verified, no agent forwarding, no password prompts,
            an unreachable host retried with backoff, then an error naming it
process.py  run one command without a login shell, stream its lines, stop it by pid
files.py    a fresh remote work directory, upload, download, remove

Nothing here knows what a trace is; engine/steps/trace_remote.py composes these.
"""
