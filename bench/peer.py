"""The peer: LangChain's load_summarize_chain (map_reduce, refine) on the same simulated model."""

from __future__ import annotations

import math
import time

import httpx
from langchain_classic.chains.summarize import load_summarize_chain
from langchain_core.documents import Document
from langchain_openai import ChatOpenAI
from langchain_text_splitters import RecursiveCharacterTextSplitter

# A LangChain user's usual splitter: ~4,000 characters (~1,000 tokens) per document, no overlap.
CHUNK_CHARS = 4_000


class OfflineChatOpenAI(ChatOpenAI):
    """ChatOpenAI counting tokens as chars/4 (like citesum and the simulator).

    The stock count uses tiktoken, which downloads its encodings on first use; this machine is
    offline. map_reduce uses the count only to decide whether to collapse before the final reduce.
    """

    def get_num_tokens(self, text: str) -> int:
        return math.ceil(len(text) / 4)


def split_documents(text: str) -> list[Document]:
    """The article as LangChain documents."""
    return RecursiveCharacterTextSplitter(chunk_size=CHUNK_CHARS, chunk_overlap=0).create_documents([text])


def make_llm(
    base_url: str, http_client: httpx.Client | None = None, http_async_client: httpx.AsyncClient | None = None
) -> ChatOpenAI:
    """ChatOpenAI pointed at the simulated server (retries off, as for citesum's transport layer)."""
    return OfflineChatOpenAI(
        base_url=base_url,
        api_key="sim",
        model="gpt-4o-mini",
        temperature=0,
        max_retries=0,
        http_client=http_client,
        http_async_client=http_async_client,
    )


async def run_chain(base_url: str, text: str, chain_type: str, *, use_async: bool = True) -> tuple[float, str]:
    """Wall seconds and output text of one `load_summarize_chain(chain_type)` run on `text`.

    Each run gets its own HTTP clients (as citesum's runs do): langchain_openai otherwise shares a
    process-wide pool, and a connection the simulator closed while idle (uvicorn keeps them 5 s)
    fails the next call, since retries are off.
    """
    async with httpx.AsyncClient(timeout=120) as async_client:
        with httpx.Client(timeout=120) as sync_client:
            chain = load_summarize_chain(make_llm(base_url, sync_client, async_client), chain_type=chain_type)
            documents = split_documents(text)
            started = time.perf_counter()
            if use_async:
                result = await chain.ainvoke({"input_documents": documents})
            else:
                result = chain.invoke({"input_documents": documents})
            return time.perf_counter() - started, result["output_text"]
