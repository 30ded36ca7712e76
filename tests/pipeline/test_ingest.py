"""Tests for service.pipeline.boilerplate (clean_text) and service.pipeline.ingest (text / HTML / URL → Document)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pytest_httpx import HTTPXMock

from service.core.config import Settings
from service.core.errors import ArticleTooLong, InvalidInput, UnprocessableArticle, URLNotAllowed
from service.core.schema import SummaryRequest
from service.pipeline.boilerplate import clean_text, explain_lines
from service.pipeline.ingest import extract_html, ingest, looks_like_html
from service.pipeline.segment import segment

SEEDS = Path(__file__).resolve().parents[2] / "seeds"


def _settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]


# --- clean_text on whole pages --------------------------------------------------------------

# (seed file, expected title, body paragraph count, noise that must be gone, text that must stay)
PAGES = [
    (
        "belarus-putin-options.txt",
        "Putin Has No Good Options As Belarus Crisis Surges",
        22,
        [
            "Accessibility links",
            "Breaking News",
            "please wait",
            "No media source currently available",
            "0:00",
            "(file photo)",
            "Few analysts expect the Kremlin to sanction",  # the caption printed twice
            "Crisis In Belarus",
            "Read our coverage",
            "World Reacts To Growing Postelection Turmoil",
            "huge occupying army....",  # the pull quote
            "-- Analyst",
            "Factory Workers Taunt",
            "16x9 Image",
            "Matthew Luxmoore",
            "Moscow-based journalist",
            "Putin Has No Good Options",  # the headline is the title, not body text
        ],
        [
            "MOSCOW -- On the evening of August 16, as hundreds of thousands rallied across Belarus",
            "“For Moscow to back a losing side, it would need too many forces,” Shraybman said",
            "Lukashenka is holding on for now",
            "This would make for a bad picture.”",
        ],
    ),
    (
        "halvik-bridge-closure.txt",
        "Halvik Closes Harbour Bridge After Inspectors Find Cracked Cables",
        7,
        [
            "Skip to main content",
            "cookies",
            "Manage preferences",
            "Northern Daily",
            "By Jane Okafor",
            "Published 14 March",
            "4 min read",
            "Share",
            "(Photo: Reuters)",
            "Advertisement",
            "Related:",
            "Sign up for our newsletter",
            "Reporting by",
            "Copyright",
            "Privacy Policy",
        ],
        [
            "HALVIK -- The city of Halvik closed its Harbour Bridge",
            # hard-wrapped across two lines in the source, one paragraph again here
            "Replacing a single cable could take up to six weeks, the firm said",
            "The council is due to debate the closure on Thursday.",
        ],
    ),
    (
        "riverton-water-rates.txt",
        "Riverton council votes to raise water rates by 9 percent",  # a sentence-case headline
        6,
        [
            "CITY HERALD",
            "Menu",
            "LOCAL NEWS",
            "Listen to this article",
            "5 min read",
            "Image 1 of 4",
            "Photograph: Ellen Marsh",
            "ADVERTISEMENT",
            "Story continues below advertisement",
            "— Mayor Dana Whitfield",
            "More from City Herald",
            "Share on Facebook",
            "Priya Raman",
            "© 2025",
        ],
        [
            "Riverton's city council voted 6-3 on Monday night",
            '"Every year we wait, the repairs get more expensive',
            "Applications open on May 1.",
        ],
    ),
]


@pytest.mark.parametrize(("name", "title", "paragraphs", "noise", "kept"), PAGES, ids=[p[0] for p in PAGES])
def test_clean_text_removes_page_furniture(
    name: str, title: str, paragraphs: int, noise: list[str], kept: list[str]
) -> None:
    raw = (SEEDS / name).read_text(encoding="utf-8")
    body, found_title = clean_text(raw)
    assert found_title == title
    for fragment in noise:
        assert fragment not in body, f"noise left in the body: {fragment!r}"
    for fragment in kept:
        assert fragment in body, f"article text lost: {fragment!r}"
    assert body.count("\n\n") == paragraphs - 1
    assert all(p.strip() == p and p for p in body.split("\n\n"))


@pytest.mark.parametrize("name", [p[0] for p in PAGES])
def test_clean_text_keeps_paragraphs_in_order(name: str) -> None:
    raw = (SEEDS / name).read_text(encoding="utf-8")
    body, _ = clean_text(raw)
    flat = " ".join(raw.split())  # hard-wrapped lines come back joined by one space
    position = 0
    for paragraph in body.split("\n\n"):
        first_words = paragraph[:60]
        found = flat.find(first_words, position)
        assert found >= position, f"paragraph out of order or rewritten: {first_words!r}"
        position = found


def test_seed_pull_quote_and_caption_are_explained() -> None:
    raw = (SEEDS / "belarus-putin-options.txt").read_text(encoding="utf-8")
    kinds = {d.text[:30]: d.kind for d in explain_lines(raw)}
    assert kinds["For Moscow to back a losing si"] == "pull quote"
    assert kinds["Russian President Vladimir Put"] == "repeated line"
    assert kinds["-- Analyst Artsyom Shraybman"] == "attribution line"
    assert kinds["Matthew Luxmoore is a Moscow-b"] == "author bio"


# --- clean_text line by line -----------------------------------------------------------------

_BEFORE = "A Headline That Is Only Here For The Test\n\nThe first real paragraph of the story ends here.\n\n"
_AFTER = "\n\nOfficials expect a decision on the matter before the summer recess."

NOISE_LINES = [
    ("Advertisement", "site label"),
    ("Loading...", "site label"),
    ("Share this article", "site label"),
    ("* * *", "site label"),
    ("0:00 0:03:44 0:00", "video timer"),
    ("1:02:03", "video timer"),
    ("• 16x9 Image", "media label"),
    ("Photo 3 of 12", "media label"),
    ("Protesters gather outside parliament on Sunday. (Photo: Reuters)", "caption"),
    ("A man walks past a closed shop in Lyon. (AP Photo/Jean Martin)", "caption"),
    ("Firefighters at the scene. Photograph: Tom Price/Getty Images", "caption"),
    ("The new terminal building, seen from the air. (file photo)", "caption"),
    ("Sign up for our newsletter to get the best stories in your inbox.", "promo"),
    ("Follow us on Instagram for more photos from the region.", "promo"),
    ("Read our full coverage of the election as results come in.", "promo"),
    ("Copyright 2024 Example News. All rights reserved.", "copyright"),
    ("© 2023 Example Media Group", "copyright"),
    ("We use cookies to give you the best experience on our website.", "cookie banner"),
    ("By continuing you accept all cookies and our privacy terms.", "cookie banner"),
    ("Related: Ten things to know about the new budget", "related link"),
    ("Read more: How the vote was counted", "related link"),
    ("By Jane Doe and John Roe", "byline"),
    ("Updated: March 3, 2024 10:32 a.m. ET", "timestamp"),
    ("Published 2 hours ago", "timestamp"),
    ("Reporting by Ana Ruiz; Editing by Tom Hale", "credit line"),
    ("— Senior economist Ana Ruiz", "attribution line"),
    ("The Week In Pictures", "heading or label"),
]


@pytest.mark.parametrize(("line", "kind"), NOISE_LINES)
def test_noise_line_is_dropped_with_its_reason(line: str, kind: str) -> None:
    decisions = explain_lines(_BEFORE + line + _AFTER)
    assert [d.kind for d in decisions] == ["title", "body", kind, "body"]
    body, _ = clean_text(_BEFORE + line + _AFTER)
    assert line.lstrip("• ") not in body


REAL_LINES = [
    "The photo agency said it would appeal the ruling.",
    "Reuters reported that talks would resume on Monday.",
    "He said: “We will not back down, whatever the cost.”",
    "Prices rose 3.2% in March, the statistics office said.",
    "By the end of the day, more than 300 people had been evacuated.",
    "Updated figures show unemployment fell to 4.1% in June.",
    "Copyright law was rewritten in 2019, lawyers said.",
    "Subscribers will pay $5 more a month from April.",
    "Follow-up talks are planned for Friday.",
    "More than 200 people were arrested, police said.",
    "Sign language interpreters were present at every briefing.",
    "El Gobierno anunció el lunes un nuevo plan de vivienda para jóvenes.",
    "— Да, — сказал он, — мы готовы к переговорам.",
    "政府は月曜日に新しい住宅計画を発表した。",
]


@pytest.mark.parametrize("line", REAL_LINES)
def test_real_paragraph_is_kept(line: str) -> None:
    body, _ = clean_text(_BEFORE + line + _AFTER)
    assert line in body.split("\n\n")


def test_short_real_paragraph_survives_when_not_repeated_elsewhere() -> None:
    text = _BEFORE + "Lukashenka denied it.\n\nShe said the army had not moved." + _AFTER
    body, _ = clean_text(text)
    assert "Lukashenka denied it." in body


def test_no_title_when_the_page_starts_with_prose() -> None:
    body, title = clean_text("The council met on Monday. It voted to close the bridge.\n\nTraffic was diverted.")
    assert title is None
    assert body == "The council met on Monday. It voted to close the bridge.\n\nTraffic was diverted."


def test_crlf_nul_and_nbsp_are_normalised() -> None:
    body, title = clean_text("Big\x00 News\r\n\r\nThe\u00a0mayor resigned on Friday,\r\nofficials said.\r\n")
    assert title is None  # two words are too few for a headline; dropped as a label instead
    assert body == "The mayor resigned on Friday, officials said."


# --- properties ---------------------------------------------------------------------------------

_FURNITURE_SAMPLES = [line for line, _ in NOISE_LINES] + REAL_LINES + ["", " ", "\r\n", "\x00", "\u2028"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(), st.sampled_from(_FURNITURE_SAMPLES)), max_size=30))
def test_clean_text_never_raises_on_any_unicode(pieces: list[str]) -> None:
    body, title = clean_text("\n".join(pieces))
    assert isinstance(body, str)
    assert title is None or (title and "\n" not in title)
    assert "\x00" not in body
    if body:
        assert all(p and p.strip() == p for p in body.split("\n\n"))
        # whatever survives can be segmented with exact offsets
        assert all(body[s.start : s.end] == s.text for s in segment(body))


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=2000))
def test_extract_html_never_raises(html: str) -> None:
    text, title = extract_html(html, None)
    assert isinstance(text, str)
    assert title is None or isinstance(title, str)


# --- HTML ------------------------------------------------------------------------------------------

PAGE_HTML = """<!doctype html><html lang="en"><head>
<title>Halvik closes bridge | Northern Daily</title>
<meta property="og:title" content="Halvik Closes Harbour Bridge After Inspectors Find Cracked Cables">
</head><body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/world">World news and analysis</a></li></ul></nav>
<header><h1>Halvik Closes Harbour Bridge After Inspectors Find Cracked Cables</h1></header>
<article>
<p>HALVIK -- The city of Halvik closed its Harbour Bridge to all traffic on Tuesday after inspectors found
cracks in three of the 48 steel cables that hold up the main span, officials said.</p>
<figure><img src="deck.jpg"><figcaption>Engineers on the deck on Tuesday. (Photo: Reuters)</figcaption></figure>
<p>The bridge carries about 62,000 vehicles a day between the port district and the city centre.</p>
<div class="ad">Advertisement</div>
<p>Sign up for our newsletter to get the day's top stories in your inbox every morning.</p>
<p>Local businesses in the port district said the closure had already cut their trade. Anders Lund, who
runs a bakery near the northern ramp, said sales fell by almost half on the first morning.</p>
</article>
<aside><h2>Most read</h2><ul><li><a href="/a">Storm warning issued for the coast tonight</a></li></ul></aside>
<section id="comments" class="comments"><h3>Comments</h3>
<div class="comment"><p>Great article, this comment should never appear in a summary of the story.</p></div></section>
<footer><p>Copyright 2025 Northern Daily. All rights reserved.</p></footer>
</body></html>"""


def test_extract_html_keeps_the_article_and_drops_the_page() -> None:
    text, title = extract_html(PAGE_HTML, "https://news.example/halvik")
    assert title == "Halvik Closes Harbour Bridge After Inspectors Find Cracked Cables"
    assert text.startswith("HALVIK -- The city of Halvik closed its Harbour Bridge")
    assert "Local businesses in the port district" in text
    for noise in ("Home", "World news", "Advertisement", "newsletter", "Storm warning", "Great article", "Copyright"):
        assert noise not in text


@pytest.mark.parametrize("html", ["", "\x00", "<html></html>", "<<<>>>", "<p>hi</p>", "<script>alert(1)</script>"])
def test_extract_html_of_no_article_is_empty(html: str) -> None:
    text, _ = extract_html(html, None)
    assert text == ""


# --- ingest ------------------------------------------------------------------------------------------


async def test_ingest_text_returns_clean_document() -> None:
    raw = (SEEDS / "belarus-putin-options.txt").read_text(encoding="utf-8")
    document = await ingest(SummaryRequest(text=raw), _settings())
    assert document.content_type == "text"
    assert document.title == "Putin Has No Good Options As Belarus Crisis Surges"
    assert "please wait" not in document.text
    assert document.source_url is None


async def test_ingest_html_uses_metadata_title() -> None:
    document = await ingest(SummaryRequest(html=PAGE_HTML), _settings())
    assert document.content_type == "html"
    assert document.title == "Halvik Closes Harbour Bridge After Inspectors Find Cracked Cables"
    assert "Advertisement" not in document.text


async def test_ingest_url_fetches_html(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url="https://news.example/halvik", html=PAGE_HTML)
    document = await ingest(SummaryRequest(url="https://news.example/halvik"), _settings())
    assert document.content_type == "url"
    assert document.source_url == "https://news.example/halvik"
    assert document.text.startswith("HALVIK -- The city of Halvik")
    assert document.title == "Halvik Closes Harbour Bridge After Inspectors Find Cracked Cables"


async def test_ingest_url_fetches_plain_text(httpx_mock: HTTPXMock) -> None:
    raw = (SEEDS / "riverton-water-rates.txt").read_text(encoding="utf-8")
    httpx_mock.add_response(url="https://news.example/riverton.txt", text=raw)
    document = await ingest(SummaryRequest(url="https://news.example/riverton.txt"), _settings())
    assert document.title == "Riverton council votes to raise water rates by 9 percent"
    assert "ADVERTISEMENT" not in document.text


async def test_ingest_url_to_loopback_is_refused(httpx_mock: HTTPXMock) -> None:
    with pytest.raises(URLNotAllowed) as caught:
        await ingest(SummaryRequest(url="http://127.0.0.1/admin"), _settings())
    assert caught.value.status == 400
    assert "127.0.0.1 is a loopback address" in caught.value.message
    assert httpx_mock.get_requests() == []


@pytest.mark.parametrize("field", ["text", "html"])
@pytest.mark.parametrize("value", ["", "   \n\t ", "\x00", "\x00\x00 \n\x00"])
async def test_blank_input_is_invalid(field: str, value: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        await ingest(SummaryRequest(**{field: value}), _settings())
    assert caught.value.status == 400
    assert f"the {field} is empty" in caught.value.message


async def test_furniture_only_text_is_unprocessable() -> None:
    text = "Accessibility links\n\nBreaking News\n\nplease wait\n\n0:00 0:03:44 0:00\n\nAdvertisement"
    with pytest.raises(UnprocessableArticle) as caught:
        await ingest(SummaryRequest(text=text), _settings())
    assert caught.value.status == 422
    assert "at least 40 are needed" in caught.value.message


async def test_too_short_article_is_unprocessable() -> None:
    with pytest.raises(UnprocessableArticle, match="20 characters were left"):
        await ingest(SummaryRequest(text="It rained.\n\nOk then."), _settings(min_article_chars=30))


async def test_article_over_the_cap_is_too_long_with_numbers() -> None:
    paragraph = "The council voted on Monday to raise water rates by nine percent from July."
    text = "\n\n".join(f"{i}. {paragraph}" for i in range(3))  # numbered: not verbatim repeats
    with pytest.raises(ArticleTooLong) as caught:
        await ingest(SummaryRequest(text=text), _settings(max_article_chars=100))
    assert caught.value.status == 413
    assert f"is {len(text):,} characters after cleaning; the limit is 100" in caught.value.message


async def test_raw_input_far_over_the_cap_is_refused_before_cleaning() -> None:
    with pytest.raises(ArticleTooLong, match="at most 400 are read"):
        await ingest(SummaryRequest(text="word " * 200), _settings(max_article_chars=100))


async def test_fetched_page_far_over_the_cap_is_refused_before_cleaning(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19: a 4.9 MB page cost 36 s of cleaning before its 413; text and html never did."""
    cleaned: list[str] = []
    monkeypatch.setattr("service.pipeline.ingest.clean_text", lambda raw: cleaned.append(raw) or ("", None))
    httpx_mock.add_response(url="https://news.example/huge.txt", text="word " * 200)
    with pytest.raises(ArticleTooLong, match=r"the page at https://news.example/huge.txt is 1,000 characters; at most 400"):
        await ingest(SummaryRequest(url="https://news.example/huge.txt"), _settings(max_article_chars=100))
    assert cleaned == []


async def test_ingest_url_reports_the_final_url(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url="https://news.example/short", status_code=301, headers={"Location": "/halvik"})
    httpx_mock.add_response(url="https://news.example/halvik", html=PAGE_HTML)
    document = await ingest(SummaryRequest(url="https://news.example/short"), _settings())
    assert document.source_url == "https://news.example/halvik"


async def test_ingest_url_without_an_article_is_unprocessable(httpx_mock: HTTPXMock) -> None:
    nav_only = "<html><body><nav><a href='/'>Home</a> <a href='/world'>World</a></nav></body></html>"
    httpx_mock.add_response(url="https://news.example/empty", html=nav_only)
    with pytest.raises(UnprocessableArticle, match="no article text found at https://news.example/empty"):
        await ingest(SummaryRequest(url="https://news.example/empty"), _settings())


def test_an_article_pasted_twice_keeps_one_copy() -> None:
    raw = (SEEDS / "halvik-bridge-closure.txt").read_text(encoding="utf-8")
    once, title = clean_text(raw)
    twice, title_twice = clean_text(raw + "\n\n" + raw)
    assert title_twice == title
    assert twice == once


def test_paragraphs_that_differ_only_in_numbers_are_all_kept() -> None:
    paragraphs = [
        f"The harbour committee in district {i} reported {i * 7 + 3} new members this spring. "
        f"Officials said the harbour budget would rise by {i + 2} percent next year."
        for i in range(1, 9)
    ]
    text, _ = clean_text("\n\n".join(paragraphs))
    assert text.split("\n\n") == paragraphs


# --- the shortcuts clean_text takes on long pages change no decision ---------------------------

_LONG_PROSE = "The council debated the budget for hours before the vote was taken. " * 40


@pytest.mark.parametrize(
    ("line", "caption"),
    [
        ("Protesters gather in the square. Photograph: Jane Smith", True),
        (_LONG_PROSE + "Photo: Jane Smith/AP", True),
        (_LONG_PROSE + "Image credit :  Reuters", True),
        ("Note: the council also said: photo : Staff", True),
        ("photograph:x", False),  # the credit needs at least two characters
        (_LONG_PROSE + "Photo: " + "x" * 70, False),  # and at most 60
        ("The photo: it showed the mayor at the scene: he was smiling, as reporters noted.", False),
        ("Telephoto: lenses", False),  # "photo" must start a word
        (_LONG_PROSE, False),
    ],
)
def test_credit_caption_rule_with_its_start_hint_matches_like_the_plain_pattern(line: str, caption: bool) -> None:
    from service.pipeline.boilerplate import _FURNITURE, _search

    hinted = [rule for rule in _FURNITURE if rule.start is not None]
    assert hinted
    for rule in hinted:
        assert _search(rule, line) == (rule.pattern.search(line) is not None)
    assert any(_search(rule, line) for rule in hinted) == caption


def test_runs_of_any_space_become_one_space_and_single_spaces_stay() -> None:
    line = "The  mayor\t\tresigned\u2003on \u00a0Friday, officials said in a statement to the press."
    body, _ = clean_text(line)
    assert body == "The mayor resigned on Friday, officials said in a statement to the press."


def test_pull_quote_found_with_words_containing_underscores() -> None:
    body_line = (
        "The report_2024 draft said that the harbour_fund would cover repairs to the old pier, "
        "the ferry terminal and the sea wall before the winter storms arrive."
    )
    quote = "The harbour_fund would cover repairs to the old pier and the ferry terminal."
    decisions = explain_lines(f"{body_line}\n\n{quote}\n\nThe mayor welcomed the plan at a meeting on Friday evening.")
    assert [d.kind for d in decisions] == ["body", "pull quote", "body"]


@pytest.mark.parametrize(
    "line",
    [
        "Crowds in the square (AP Photo/Evan Vucci)",
        "Crowds in the square (AP Photo/Evan Vucci) .",
        "Crowds (in the) square (file photo)\n",
        "Crowds (in the square (file photo)",
        "The (file photo) was shown later.",
        "(Reuters) The minister said on Monday (AP).",
        "A view of the port | Getty Images",
        "A view of the port / AP / more",
        "Protesters march. REUTERS/Kevin Lamarque",
        "Protesters march, REUTERS/Kevin/Lamarque",
        "xREUTERS/Kevin Lamarque",
        _LONG_PROSE + "(Photo: Jane Smith/AP)",
        _LONG_PROSE + "Photo: Jane Smith / AP",
    ],
)
def test_every_start_hint_finds_what_the_plain_pattern_finds(line: str) -> None:
    from service.pipeline.boilerplate import _FURNITURE, _search

    for rule in _FURNITURE:
        assert _search(rule, line) == (rule.pattern.search(line) is not None), rule.pattern.pattern


@pytest.mark.parametrize(
    "text",
    [
        "Don't stop: rock'n'roll ''quoted'' o''brien 'tis the seasons'",
        "snake_case_words and__double under_score",
        "İstanbul Straße café naïve “quoted” words—dashes…ellipsis ½ ١٢٣ 𝐀𝐁𝐂 e\u0301tude",
        "numbers 1,234.56 and 7.5% rose; the be an it yes",
    ],
)
def test_content_words_are_the_word_pattern_matches(text: str) -> None:
    import re

    from service.pipeline.boilerplate import _STOPWORDS, _content_words

    folded = text.casefold().replace("’", "'")
    expected = {w for w in re.findall(r"[^\W_]+(?:'[^\W_]+)*", folded) if len(w) >= 3} - _STOPWORDS
    assert _content_words(text.casefold()) == expected


@pytest.mark.parametrize(
    "wrap",
    [
        lambda paras: "<!DOCTYPE html><html><body>" + "".join(f"<p>{p}</p>" for p in paras) + "</body></html>",
        lambda paras: '<div class="story">' + "".join(f"<p>{p}</p>\n" for p in paras) + "</div>",
    ],
    ids=["page", "fragment"],
)
async def test_html_pasted_as_text_is_read_as_html_and_said_so(seed_text: str, wrap) -> None:
    pasted = wrap([p for p in seed_text.split("\n\n") if p.strip()])
    document = await ingest(SummaryRequest(text=pasted), Settings())
    assert "<p>" not in document.text and "</div>" not in document.text
    assert document.content_type == "html"
    assert document.notes and "read as HTML" in document.notes[0]


@pytest.mark.parametrize(
    "text",
    [
        "The markup <b> tag makes text bold, the reporter wrote in a story about the web's early days.",
        "Shares rose 3% as profits <5m were reported, and analysts said x > y in most quarters this year.",
    ],
)
def test_plain_text_that_mentions_a_tag_is_not_html(text: str) -> None:
    assert not looks_like_html(text)
