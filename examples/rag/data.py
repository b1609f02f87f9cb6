"""Multi-hop QA data for the RAG example: HotpotQA and MuSiQue samples, EM/F1, folds.

The two samples ship with the repository (``examples/data/``, with their license notices):

* HotpotQA (distractor setting, CC BY-SA 4.0): 100 questions, 10 paragraphs each (one question
  has 4). Gold paragraphs are the titles named in ``supporting_facts``. A gold paragraph is a
  *bridge* (indirectly relevant) paragraph when its text does not contain the answer: the
  normalized answer is not a whole-word phrase of the normalized paragraph text (title excluded).
  A ``yes``/``no`` answer of a comparison question therefore makes both gold paragraphs bridge.
* MuSiQue (CC BY 4.0): 100 answerable 2- to 4-hop questions, 20 paragraphs each. Gold paragraphs
  are those with ``is_supporting``; bridge paragraphs are the supporting paragraphs of every hop
  but the last (``question_decomposition[*].paragraph_support_idx``, which indexes paragraphs by
  their ``idx`` field).

Paragraphs keep the file's order and each question keeps its true paragraph count; a batched
consumer pads to the largest count and masks (see :func:`pad`).

The answer metrics follow SQuAD's evaluation: lowercase, drop punctuation and the articles
``a``/``an``/``the``, collapse whitespace; exact match and token-level F1, the best over the answer
and its aliases.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import pathlib
import re
import string

import numpy as np

DATA_DIR = pathlib.Path(__file__).resolve().parents[1] / "data"
HOTPOTQA_PATH = DATA_DIR / "hotpotqa" / "hotpotqa_train_100.json"
MUSIQUE_PATH = DATA_DIR / "musique" / "musique_train_100.json"


@dataclasses.dataclass(frozen=True, eq=False)
class Question:
    """One question with its candidate paragraphs.

    Attributes:
        dataset: ``"hotpotqa"`` or ``"musique"``.
        qid: the record's id.
        question: the question text.
        answers: the answer followed by its aliases (MuSiQue only has aliases).
        titles: paragraph titles, in the file's order.
        texts: paragraph texts (HotpotQA: the sentences joined), in the file's order.
        gold: bool ``[n_paragraphs]``, the supporting paragraphs.
        bridge: bool ``[n_paragraphs]``, the gold paragraphs that are only indirectly relevant.
        qtype: HotpotQA: ``"bridge"`` or ``"comparison"``; MuSiQue: ``"2hop"``, ``"3hop"`` or
            ``"4hop"``.
    """

    dataset: str
    qid: str
    question: str
    answers: tuple[str, ...]
    titles: tuple[str, ...]
    texts: tuple[str, ...]
    gold: np.ndarray
    bridge: np.ndarray
    qtype: str = ""

    @property
    def n(self) -> int:
        """Number of paragraphs."""
        return len(self.texts)

    @property
    def passages(self) -> tuple[str, ...]:
        """Paragraphs as the reranker embeds them: ``"<title>. <text>"``."""
        return tuple(passage_text(t, x) for t, x in zip(self.titles, self.texts, strict=True))


def passage_text(title: str, text: str) -> str:
    """The text a paragraph is embedded as: its title, a full stop, then its text."""
    return f"{title.strip()}. {text.strip()}"


def _readonly(a) -> np.ndarray:
    a = np.asarray(a, dtype=bool)
    a.setflags(write=False)
    return a


def _contains_answer(text: str, answer: str) -> bool:
    """Whether the answer string occurs in the text, ignoring case (the data README's test)."""
    return answer.strip().lower() in text.lower()


def load_hotpotqa(path=None) -> list[Question]:
    """Reads the HotpotQA sample (distractor format) as a list of :class:`Question`."""
    records = json.loads(pathlib.Path(path or HOTPOTQA_PATH).read_text(encoding="utf-8"))
    out = []
    for r in records:
        titles = tuple(title for title, _ in r["context"])
        texts = tuple("".join(sentences).strip() for _, sentences in r["context"])
        gold_titles = {title for title, _ in r["supporting_facts"]}
        missing = gold_titles - set(titles)
        if missing:
            raise ValueError(f"{r['_id']}: supporting titles not in context: {sorted(missing)}")
        gold = np.array([t in gold_titles for t in titles])
        # Only bridge-type questions have a bridge paragraph: in a comparison question neither
        # gold paragraph need contain the answer (often "yes"/"no"), yet both are directly
        # relevant.
        lacks = np.array([not _contains_answer(x, r["answer"]) for x in texts])
        bridge = gold & lacks & (r.get("type") == "bridge")
        out.append(
            Question(
                dataset="hotpotqa",
                qid=r["_id"],
                question=r["question"],
                answers=(r["answer"],),
                titles=titles,
                texts=texts,
                gold=_readonly(gold),
                bridge=_readonly(bridge),
                qtype=r.get("type", ""),
            )
        )
    return out


def load_musique(path=None) -> list[Question]:
    """Reads the MuSiQue sample as a list of :class:`Question`."""
    records = json.loads(pathlib.Path(path or MUSIQUE_PATH).read_text(encoding="utf-8"))
    out = []
    for r in records:
        paragraphs = r["paragraphs"]
        position = {p["idx"]: i for i, p in enumerate(paragraphs)}
        hops = [d["paragraph_support_idx"] for d in r["question_decomposition"]]
        bridge = np.zeros(len(paragraphs), bool)
        for idx in hops[:-1]:
            bridge[position[idx]] = True
        bridge[position[hops[-1]]] = False  # a paragraph that also answers the last hop
        out.append(
            Question(
                dataset="musique",
                qid=r["id"],
                question=r["question"],
                answers=(r["answer"], *r.get("answer_aliases", ())),
                titles=tuple(p["title"] for p in paragraphs),
                texts=tuple(p["paragraph_text"].strip() for p in paragraphs),
                gold=_readonly([p["is_supporting"] for p in paragraphs]),
                bridge=_readonly(bridge),
                qtype=f"{len(hops)}hop",
            )
        )
    return out


def pad(questions: list[Question]) -> dict[str, np.ndarray]:
    """Stacks the per-paragraph labels of ``questions`` into padded arrays.

    Returns:
        ``mask`` (bool ``[Q, n_max]``, true for a real paragraph), ``gold`` and ``bridge`` (bool
        ``[Q, n_max]``, false at padding).
    """
    n_max = max((q.n for q in questions), default=0)
    out = {k: np.zeros((len(questions), n_max), bool) for k in ("mask", "gold", "bridge")}
    for i, q in enumerate(questions):
        out["mask"][i, : q.n] = True
        out["gold"][i, : q.n] = q.gold
        out["bridge"][i, : q.n] = q.bridge
    return out


# --- answer metrics (SQuAD-style) ---------------------------------------------------------------

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """Lowercases, drops punctuation and the articles a/an/the, and collapses whitespace."""
    s = "".join(c for c in s.lower() if c not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def _as_answers(answers) -> tuple[str, ...]:
    return (answers,) if isinstance(answers, str) else tuple(answers)


_PREAMBLE = re.compile(r"^\s*(?:the\s+)?answer(?:\s+is)?\b\s*[:\-]?", re.IGNORECASE)


def strip_preamble(text: str) -> str:
    """Drops a leading "The answer is:" (or "Answer:") from a generated answer.

    The 135M reader, asked for an answer, often opens with that phrase before the answer itself;
    exact match would count every such answer wrong.

    >>> strip_preamble(" The answer is: English")
    'English'
    >>> strip_preamble("Answerable questions")
    'Answerable questions'
    """
    return _PREAMBLE.sub("", text, count=1).strip()


def exact_match(pred: str, answers) -> float:
    """1.0 when the normalized prediction equals one of the normalized answers, else 0.0."""
    p = normalize_answer(pred)
    return float(any(p == normalize_answer(a) for a in _as_answers(answers)))


def _f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    if not pred_tokens or not gold_tokens:  # SQuAD 2.0's convention for empty answers
        return float(pred_tokens == gold_tokens)
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1(pred: str, answers) -> float:
    """Token-level F1 of the normalized prediction, the best over the answers."""
    p = normalize_answer(pred).split()
    return max((_f1(p, normalize_answer(a).split()) for a in _as_answers(answers)), default=0.0)


# --- cross-validation -----------------------------------------------------------------------------


def folds(n: int, k: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Splits ``range(n)`` into ``k`` shuffled folds.

    Returns:
        ``k`` pairs ``(train_idx, test_idx)`` of sorted int arrays; the test sets partition
        ``range(n)`` and differ in size by at most one.
    """
    if not 1 <= k <= max(n, 1):
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    perm = np.random.default_rng(seed).permutation(n)
    out = []
    for test in np.array_split(perm, k):
        test = np.sort(test)
        train = np.setdiff1d(np.arange(n), test)
        out.append((train, test))
    return out
