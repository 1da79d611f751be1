"""Tiny BERT models that tests build themselves (the Hugging Face Hub is out of reach).

    build_tiny_model(directory, task) -> directory

writes a randomly initialised (seeded) 2-layer BERT with a word-level vocabulary for
`task` (question-answering, feature-extraction or text-classification), in the layout
`from_pretrained` reads: config.json, model.safetensors, tokenizer files. Answers are
meaningless but deterministic, which is what comparing traced with untraced needs.
"""

from __future__ import annotations

from pathlib import Path

_TEXT = (
    "the a an of to in is are was were be by for on with as at from and or not this that "
    "model models server servers engine plan state apply trace pack deploy replica replicas "
    "where what who how does do keep keeps kept json file files step steps every after "
    "atomically written rewritten under doinfer environment each question answer context "
    "inference packed densely few machines cost less more fast slow good bad came up quickly "
    "answer was correct spec specs merge merged maps lists named name names"
)
WORDS = tuple(_TEXT.split())


def build_tiny_model(directory: Path, task: str, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import (
        BertConfig,
        BertForQuestionAnswering,
        BertForSequenceClassification,
        BertModel,
        PreTrainedTokenizerFast,
    )

    directory.mkdir(parents=True, exist_ok=True)
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )
    fast.save_pretrained(directory)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=2 if task == "question-answering" else 3,
        **(
            {}
            if task == "question-answering"
            else {
                "id2label": {0: "negative", 1: "neutral", 2: "positive"},
                "label2id": {"negative": 0, "neutral": 1, "positive": 2},
            }
        ),
    )
    torch.manual_seed(seed)
    model_class = {
        "question-answering": BertForQuestionAnswering,
        "text-classification": BertForSequenceClassification,
        "feature-extraction": BertModel,
    }[task]
    model_class(config).eval().save_pretrained(directory)
    return directory
