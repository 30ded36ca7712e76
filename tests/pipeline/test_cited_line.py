"""A one-sentence answer as plain text with its ids (`Sentence. [s3, s4]`) read into the summary reply shape."""

from __future__ import annotations

import pytest

from service.pipeline.cited_line import parse_cited_line
from service.pipeline.llm import InvalidOutput
from service.pipeline.summarize import validate_summary_reply


def one(text: str, citations: list[str]) -> dict:
    return {"sentences": [{"text": text, "citations": citations}]}


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Putin met Lukashenko in Minsk. [s3, s4]", one("Putin met Lukashenko in Minsk.", ["s3", "s4"])),
        ("Putin met Lukashenko in Minsk [s3].", one("Putin met Lukashenko in Minsk.", ["s3"])),
        ("Putin met Lukashenko [s3] in Minsk [s4; s3].", one("Putin met Lukashenko in Minsk.", ["s3", "s4"])),
        ("Putin met Lukashenko. [S3][s12]\n", one("Putin met Lukashenko.", ["s3", "s12"])),
        ("Here is the sentence:\nPutin met Lukashenko. [s3]", one("Putin met Lukashenko.", ["s3"])),
        ("  Putin   met\tLukashenko. [ s3 ,s4 ]", one("Putin met Lukashenko.", ["s3", "s4"])),
        ("<Putin met Lukashenko.> [s3]", one("Putin met Lukashenko.", ["s3"])),  # a real 1.5B model's answer
        ("Riverton council votes to raise water rates by 9 percent [s1, s2]",  # the same model, verbatim
         one("Riverton council votes to raise water rates by 9 percent", ["s1", "s2"])),
        # A model that answers in the JSON shape anyway is read as JSON.
        ('{"sentences": [{"text": "Putin met Lukashenko.", "citations": ["s3"]}]}', one("Putin met Lukashenko.", ["s3"])),
        ('```json\n{"sentences": [{"text": "A.", "citations": ["s1"]}]}\n```', one("A.", ["s1"])),
    ],
)
def test_a_cited_line_becomes_one_cited_sentence(reply: str, expected: dict) -> None:
    assert parse_cited_line(reply, validate_summary_reply) == expected


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("[s3, s4]", "no sentence"),
        ("Putin met Lukashenko. [s1, s2, s3, s4]", "cites 4 ids"),
    ],
)
def test_an_answer_without_a_sentence_or_its_ids_is_invalid(reply: str, why: str) -> None:
    with pytest.raises(InvalidOutput, match=why):
        parse_cited_line(reply, validate_summary_reply)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Putin met Lukashenko in Minsk.", one("Putin met Lukashenko in Minsk.", [])),
        ("Here is the sentence:\nPutin met Lukashenko.", one("Putin met Lukashenko.", [])),
        ("Putin met Lukashenko [3].", one("Putin met Lukashenko [3].", [])),  # an id is `s` and digits
    ],
)
def test_a_sentence_without_ids_is_kept_uncited_for_the_verifier_to_cite(reply: str, expected: dict) -> None:
    assert parse_cited_line(reply, validate_summary_reply) == expected


def test_brackets_that_are_not_ids_stay_in_the_sentence() -> None:
    data = parse_cited_line("The [unnamed] official resigned. [s2]")
    assert data == one("The [unnamed] official resigned.", ["s2"])
