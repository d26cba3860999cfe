"""Character error rate, the metric the TrOCR paper reports (IAM: 4.22 / 3.42 / 2.89 % for small / base / large)."""
from __future__ import annotations


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions all cost 1)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cer(reference: str, hypothesis: str) -> float:
    """Edit distance / reference length (0 for two empty strings)."""
    return edit_distance(reference, hypothesis) / max(1, len(reference))
