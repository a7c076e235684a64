"""Graders: similarity scores are the libraries' own, formulas are safe, and a model
judge answers only in the allowed labels or range, even when the model is a
random-weight toy that would otherwise babble."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import register_models
from tests.tiny_models import TINY_CHAT, tiny_registry_entry
from tunelab.evals import formula, similarity
from tunelab.evals.criteria import JudgeSampling, Message, parse_criteria
from tunelab.evals.graders import Grading, UsageTally, grade
from tunelab.evals.judging import MaskedJudge
from tunelab.runtime import build_runtime
from tunelab.settings import Settings

PAIRS = [
    ("the cat sat on the mat", "a cat was sitting on the mat"),
    ("Refunds take five business days.", "A refund takes 5 business days."),
    ("completely unrelated words here", "the printer is out of toner"),
    ("identical text", "identical text"),
]


@pytest.mark.unit
@pytest.mark.parametrize(("text", "reference"), PAIRS)
def test_similarity_scores_are_the_libraries_own(text: str, reference: str) -> None:
    import sacrebleu
    from nltk.translate.gleu_score import sentence_gleu
    from rapidfuzz import fuzz
    from rouge_score import rouge_scorer

    expected = {
        "fuzzy_match": fuzz.ratio(text, reference) / 100,
        "bleu": sacrebleu.sentence_bleu(text, [reference]).score / 100,
        "gleu": sentence_gleu([reference.split()], text.split()),
    }
    for n in "12345":
        key = f"rouge{n}"
        scorer = rouge_scorer.RougeScorer([key])
        expected[f"rouge_{n}"] = scorer.score(reference, text)[key].fmeasure
    expected["rouge_l"] = (
        rouge_scorer.RougeScorer(["rougeL"]).score(reference, text)["rougeL"].fmeasure
    )
    for metric, value in expected.items():
        assert similarity.score(metric, text, reference) == pytest.approx(value, abs=1e-12)
    assert similarity.score("fuzzy_match", "identical text", "identical text") == 1.0


@pytest.mark.unit
def test_meteor_uses_wordnet_when_installed() -> None:
    if similarity.metric_unavailable("meteor") is not None:
        pytest.skip("WordNet (Debian wordnet-base) is not installed here")
    from nltk.translate.meteor_score import meteor_score

    reference = "a cat was sitting on the mat"
    for text, _ in PAIRS:
        expected = meteor_score([reference.split()], text.split(), wordnet=similarity._wordnet())
        assert similarity.score("meteor", text, reference) == pytest.approx(expected)
    # "sat" matches "sitting" only through WordNet; "stood" matches nothing.
    sat = similarity.score("meteor", "the cat sat on the mat", reference)
    stood = similarity.score("meteor", "the cat stood on the mat", reference)
    assert 0 < stood < sat <= 1


@pytest.mark.unit
def test_formula_evaluates_arithmetic_and_refuses_everything_else() -> None:
    assert formula.evaluate("0.5 * a + 0.5 * max(b, 0.2) ^ 2", {"a": 1.0, "b": 0.0}) == 0.52
    assert formula.evaluate("sqrt(a) + floor(b)", {"a": 4.0, "b": 2.7}) == 4.0
    for bad in ("a.__class__", "open('x')", "a if b else 1", "[a][0]", "a < b", "c + 1"):
        with pytest.raises(formula.FormulaError):
            formula.check(bad, {"a", "b"})
    with pytest.raises(formula.FormulaError):
        formula.evaluate("a / b", {"a": 1.0, "b": 0.0})


@pytest.mark.unit
def test_string_check_operations() -> None:
    schema = {"type": "object", "properties": {"x": {"type": "string"}}}
    crits, _ = parse_criteria(
        [
            {"type": "string_check", "name": op, "input": "{{sample.output_text}}",
             "reference": "{{item.x}}", "operation": op}
            for op in ("eq", "ne", "like", "ilike")
        ],
        schema,
    )  # fmt: skip
    ctx = Grading("p", judge=None, cosine=lambda a, b: 0.0, usage=UsageTally())  # type: ignore[arg-type]
    results = {
        c.name: grade(c, {"x": "Paris"}, {"output_text": "It is paris."}, ctx).passed for c in crits
    }
    assert results == {"eq": False, "ne": True, "like": False, "ilike": True}


@pytest.fixture
def tiny_runtime(settings: Settings, tiny_chat_dir: Path):
    register_models(settings, [tiny_registry_entry(tiny_chat_dir)])
    runtime = build_runtime(settings, embedded_worker=False)
    yield runtime
    runtime.close()


@pytest.mark.api
def test_a_random_model_judge_still_answers_only_allowed_labels(tiny_runtime) -> None:
    """The tiny model has random weights: unconstrained it emits arbitrary tokens. The
    judge must still return exactly one of the labels, every time."""
    judge = MaskedJudge(tiny_runtime.inference)
    labels = ["correct", "incorrect", "partially correct"]
    seen = set()
    for i in range(3):
        messages = [Message("user", f"Is answer {i} right? The answer: {'yes ' * i}")]
        verdict = judge.label("default", TINY_CHAT, messages, labels, JudgeSampling(seed=i))
        assert verdict.text in labels
        seen.add(verdict.text)
        sampled = JudgeSampling(temperature=1.0, seed=i)
        score = judge.score("default", TINY_CHAT, messages, 1, 7, sampled)
        assert 0 <= float(score.text) < 10  # a number, one integer digit like the range
    # Without the constraint the same model answers with anything at all.
    free = tiny_runtime.inference.complete_chat(
        "default", TINY_CHAT, [{"role": "user", "content": "Is answer 1 right?"}]
    )
    assert free.text not in labels


@pytest.mark.realmodel
def test_smollm2_label_judge_through_an_eval(tiny_runtime) -> None:
    """The embedded chat model as a label_model judge answers only in its labels."""
    rows = [
        ("What is the capital of France?", "Paris", "correct"),
        ("What is the capital of France?", "Banana", "incorrect"),
        ("How many legs does a spider have?", "Eight", "correct"),
        ("How many legs does a spider have?", "Purple", "incorrect"),
    ]
    schema = {"type": "object", "properties": {"q": {"type": "string"}, "a": {"type": "string"}}}
    [crit], _ = parse_criteria(
        [
            {
                "type": "label_model",
                "name": "judge",
                "model": "smollm2-135m-instruct",
                "input": [
                    {"role": "system", "content": "You check answers to questions."},
                    {"role": "user", "content": "Question: {{item.q}}\nAnswer: {{item.a}}\n"
                     "Is the answer correct or incorrect?"},
                ],
                "labels": ["correct", "incorrect"],
                "passing_labels": ["correct"],
            }
        ],
        schema,
    )  # fmt: skip
    usage = UsageTally()
    ctx = Grading("default", MaskedJudge(tiny_runtime.inference), lambda a, b: 0.0, usage)
    verdicts = [grade(crit, {"q": q, "a": a}, None, ctx) for q, a, _ in rows]
    assert all(v.error is None and v.extra["label"] in ("correct", "incorrect") for v in verdicts)
    assert usage.by_model["smollm2-135m-instruct"].invocation_count >= len(rows)
