"""Chapter 12, instruction tuning."""

from __future__ import annotations

import re

from gpt2.training.instructions import Example


def learnt_pieces(example: Example, tokenizer) -> list[str]:
    """Exercise 1: each run of learnt tokens, decoded."""
    pieces: list[str] = []
    run: list[int] = []
    for token, learnt in zip(example.ids, example.learnt):
        if learnt:
            run.append(token)
        elif run:
            pieces.append(tokenizer.decode(run))
            run = []
    if run:
        pieces.append(tokenizer.decode(run))
    return pieces


def is_correct(question: str, reply: str) -> bool:
    """Exercise 2: the reply is the answer (spaces around it ignored)."""
    answer = reply.strip()
    word = question.splitlines()[-1].strip()
    if question.startswith("Reverse the word."):
        return answer == word[::-1]
    if question.startswith("Write the word in capital letters."):
        return answer == word.upper()
    sum_ = re.fullmatch(r"What is (\d+) \+ (\d+)\?", question.strip())
    return sum_ is not None and answer == str(int(sum_[1]) + int(sum_[2]))


def unmasked(example: Example) -> Example:
    """Exercise 3: the same example with every token learnt (the prompt too)."""
    return Example(example.ids, (True,) * len(example.ids), example.line)
