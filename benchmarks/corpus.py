"""A fixed corpus of request texts for the serving benchmarks: questions and passages of the
kind users embed, lengths varied (most 10-40 tokens, some past 128 and truncated there).

The texts live in engine/data/corpus.json, shipped with the package: the trace step also
measures a reduced precision's agreement with fp32 on them (engine/calibration.py).
"""

from engine.calibration import default_corpus

QUESTIONS, PASSAGES = default_corpus()
TEXTS = QUESTIONS + PASSAGES
