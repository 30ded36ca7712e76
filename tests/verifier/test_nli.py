"""The optional NLI model: a tiny ONNX classifier and WordLevel tokenizer built here, never downloaded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.core.config import Settings
from service.interfaces.cli import main as cli_main
from service.pipeline.segment import segment
from service.verifier.nli import NliModelError, NliRule, NliScorer, configured_scorer
from service.verifier.verify import DEFAULT_THRESHOLD, SourceIndex, verify_claim

onnx = pytest.importorskip("onnx")
np = pytest.importorskip("numpy")
pytest.importorskip("onnxruntime")
tokenizers = pytest.importorskip("tokenizers")

CALM = "After the vote, the mayor said the new bridge will open in May."
# Same sentence with one word the tiny model reads as contradiction ("flood"); the combiner sees a
# verbatim copy of the claim either way, so only the NLI model can tell the two sources apart.
STORMY = "After the flood, the mayor said the new bridge will open in May."
BUDGET = "The council approved a budget of 40 million euros for the work on Tuesday."
CLAIM = "The mayor said the new bridge will open in May."
UNSURE = "Officials think the bridge opens in May."  # the combiner scores it just under the threshold
CONTRADICTION, NEUTRAL, ENTAILMENT = 0, 1, 2


def build_tokenizer(path: Path, texts: list[str]) -> dict[str, int]:
    """A WordLevel tokenizer.json over the words of `texts` (BERT-style pair template); returns its vocabulary."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
    splitter = pre_tokenizers.Whitespace()
    for text in texts:
        for word, _ in splitter.pre_tokenize_str(text.lower()):
            vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = splitter
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer.save(str(path))
    return vocab


def build_model(path: Path, vocab: dict[str, int]) -> None:
    """logits[b] = sum over unmasked tokens of a per-token row: each word adds 1 to entailment, "flood"
    adds 50 to contradiction, so a pair with "flood" in it is a contradiction and any other an entailment."""
    from onnx import TensorProto, helper, numpy_helper

    table = np.zeros((len(vocab), 3), dtype=np.float32)
    table[:, ENTAILMENT] = 1.0
    table[vocab["flood"]] = [50.0, 0.0, 0.0]
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "input_ids"], ["rows"]),
            helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["mask_f", "axis2"], ["mask3"]),
            helper.make_node("Mul", ["rows", "mask3"], ["masked"]),
            helper.make_node("ReduceSum", ["masked", "axis1"], ["logits"], keepdims=0),
        ],
        "tiny-nli",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        initializer=[numpy_helper.from_array(table, "table"),
                     numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
                     numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by every onnxruntime from 1.10 on
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("nli")
    vocab = build_tokenizer(folder / "tokenizer.json", [CALM, STORMY, BUDGET, CLAIM, UNSURE])
    build_model(folder / "model.onnx", vocab)
    return folder


@pytest.fixture(scope="module")
def scorer(model_dir: Path) -> NliScorer:
    return NliScorer(model_dir / "model.onnx", model_dir / "tokenizer.json")


def index_of(*sentences: str) -> SourceIndex:
    return SourceIndex(segment(" ".join(sentences)))


def test_scorer_gives_entailment_probability_of_the_best_premise(scorer: NliScorer) -> None:
    assert scorer.entailment([CALM], CLAIM) > 0.99
    assert scorer.entailment([STORMY], CLAIM) < 0.01
    # A batch is padded to its longest pair; the mask keeps padding out, so the batch's answer is
    # the best single answer, whichever order the premises come in.
    short, long = "The mayor spoke.", f"{CALM} {BUDGET}"
    alone = max(scorer.entailment([short], CLAIM), scorer.entailment([long], CLAIM))
    assert scorer.entailment([short, long], CLAIM) == pytest.approx(alone)
    assert scorer.entailment([STORMY, CALM], CLAIM) == pytest.approx(scorer.entailment([CALM], CLAIM))
    assert scorer.entailment([], CLAIM) == 0.0


def test_contradicting_evidence_vetoes_a_supported_claim_with_a_reason(scorer: NliScorer) -> None:
    index = index_of(STORMY, BUDGET)
    without = verify_claim(CLAIM, ["s1"], index, nli=None)
    assert without.verdict == "supported" and without.score == 1.0
    checked = verify_claim(CLAIM, ["s1"], index, nli=scorer)
    assert checked.verdict == "unsupported"
    assert checked.reason == "NLI: evidence does not entail the claim (p=0.00)"
    # Pushed below the threshold as a hard check is (out of the LLM judge's band), order kept.
    assert checked.score == round(without.score * DEFAULT_THRESHOLD * 0.5, 4)
    assert checked.evidence_ids == without.evidence_ids


def test_entailing_evidence_leaves_a_supported_claim_alone(scorer: NliScorer) -> None:
    index = index_of(CALM, BUDGET)
    assert verify_claim(CLAIM, ["s1"], index, nli=scorer) == verify_claim(CLAIM, ["s1"], index, nli=None)


def test_entailing_evidence_lifts_an_unsure_claim_and_contradicting_evidence_does_not(scorer: NliScorer) -> None:
    calm = index_of(CALM, BUDGET)
    without = verify_claim(UNSURE, ["s1"], calm, nli=None)
    assert without.verdict == "unsupported"
    assert DEFAULT_THRESHOLD - NliRule().lift_band <= without.score < DEFAULT_THRESHOLD
    lifted = verify_claim(UNSURE, ["s1"], calm, nli=scorer)
    assert lifted.verdict == "supported" and lifted.score == DEFAULT_THRESHOLD and lifted.reason is None
    stormy = index_of(STORMY, BUDGET)
    assert verify_claim(UNSURE, ["s1"], stormy, nli=scorer) == verify_claim(UNSURE, ["s1"], stormy, nli=None)


def test_a_failed_hard_check_is_never_lifted(model_dir: Path) -> None:
    index = index_of(CALM, BUDGET)
    # The number is changed: a hard check vetoes it, and the tiny model calls it entailed; even a
    # band as wide as the threshold itself does not lift it.
    claim = "The council approved a budget of 50 million euros for the work."
    permissive = NliScorer(model_dir / "model.onnx", model_dir / "tokenizer.json",
                           rule=NliRule(lift_above=0.5, lift_band=0.5))
    assert permissive.entailment([BUDGET], claim) > 0.99
    without = verify_claim(claim, ["s2"], index, nli=None)
    assert without.verdict == "unsupported" and "50" in (without.reason or "")
    assert verify_claim(claim, ["s2"], index, nli=permissive) == without


def test_settings_name_the_model_and_the_entailment_index(model_dir: Path) -> None:
    settings = Settings(nli_model_path=model_dir / "model.onnx")  # tokenizer.json found next to it
    scorer = configured_scorer(settings)
    assert scorer is not None and scorer.rule == NliRule(settings.nli_veto_below, settings.nli_lift_above,
                                                         settings.nli_lift_band)
    index = index_of(CALM, BUDGET)
    assert verify_claim(CLAIM, ["s1"], index, nli=scorer).verdict == "supported"
    # Reading the contradiction logit as "entailment" turns the same evidence into a veto.
    flipped = configured_scorer(Settings(nli_model_path=model_dir / "model.onnx", nli_entailment_index=CONTRADICTION))
    assert flipped is not None and flipped.entailment([CALM], CLAIM) < 0.01
    assert verify_claim(CLAIM, ["s1"], index, nli=flipped).reason == "NLI: evidence does not entail the claim (p=0.00)"
    assert configured_scorer(Settings()) is None


def test_the_environment_switches_it_on_for_verify_claim(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.core.config import get_settings

    index = index_of(STORMY, BUDGET)
    assert verify_claim(CLAIM, ["s1"], index).verdict == "supported"  # unset: off
    monkeypatch.setenv("CITESUM_NLI_MODEL_PATH", str(model_dir / "model.onnx"))
    get_settings.cache_clear()
    assert verify_claim(CLAIM, ["s1"], index).reason == "NLI: evidence does not entail the claim (p=0.00)"


def test_unset_settings_never_import_onnxruntime_or_tokenizers(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from service.interfaces.api import create_app\n"
        "from service.pipeline.segment import segment\n"
        "from service.verifier.verify import SourceIndex, verify_claim, warm_up\n"
        "create_app(); warm_up()\n"
        f"index = SourceIndex(segment({CALM!r}))\n"
        f"assert verify_claim({CLAIM!r}, ['s1'], index).verdict == 'supported'\n"
        "print(sorted(m for m in ('onnxruntime', 'tokenizers', 'onnx') if m in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITESUM_NLI_")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_missing_files_and_packages_stop_start_up_with_one_clear_line(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValidationError, match="NLI model file '.*missing.onnx' is missing or unreadable"):
        Settings(nli_model_path=tmp_path / "missing.onnx")
    lonely = tmp_path / "model.onnx"
    lonely.write_bytes((model_dir / "model.onnx").read_bytes())
    with pytest.raises(ValidationError, match="NLI tokenizer file '.*tokenizer.json' is missing or unreadable"):
        Settings(nli_model_path=lonely)
    assert Settings(nli_model_path=lonely, nli_tokenizer_path=model_dir / "tokenizer.json").nli_tokenizer_file == (
        model_dir / "tokenizer.json")

    monkeypatch.setenv("CITESUM_NLI_MODEL_PATH", str(tmp_path / "missing.onnx"))
    assert cli_main(["summarize", "-"]) == 2
    assert "setting CITESUM_NLI_MODEL_PATH=" in capsys.readouterr().err

    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real_find_spec(name, *a))
    with pytest.raises(ValidationError, match=r"needs onnxruntime: pip install 'citesum\[nli\]'"):
        Settings(nli_model_path=model_dir / "model.onnx")


def test_an_unusable_model_fails_at_load_naming_the_file(model_dir: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx file")
    with pytest.raises(NliModelError, match="garbage.onnx' cannot be loaded by onnxruntime"):
        NliScorer(garbage, model_dir / "tokenizer.json")
    bad_tokenizer = tmp_path / "tokenizer.json"
    bad_tokenizer.write_text("{}", encoding="utf-8")
    with pytest.raises(NliModelError, match="NLI tokenizer '.*tokenizer.json' cannot be read"):
        NliScorer(model_dir / "model.onnx", bad_tokenizer)
    with pytest.raises(NliModelError, match="CITESUM_NLI_ENTAILMENT_INDEX=3 but the model has 3 output classes"):
        NliScorer(model_dir / "model.onnx", model_dir / "tokenizer.json", entailment_index=3)


def test_warm_up_loads_the_configured_model_and_fails_on_an_unusable_one(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.core.config import get_settings
    from service.verifier.verify import warm_up

    garbage = tmp_path / "model.onnx"
    garbage.write_bytes(b"not an onnx file")
    (tmp_path / "tokenizer.json").write_bytes((model_dir / "tokenizer.json").read_bytes())
    monkeypatch.setenv("CITESUM_NLI_MODEL_PATH", str(garbage))
    get_settings.cache_clear()
    with pytest.raises(NliModelError, match="model.onnx' cannot be loaded by onnxruntime"):
        warm_up()  # the API's start-up, not its first request
    monkeypatch.setenv("CITESUM_NLI_MODEL_PATH", str(model_dir / "model.onnx"))
    get_settings.cache_clear()
    warm_up()
    assert configured_scorer() is configured_scorer() is not None  # loaded once, kept
