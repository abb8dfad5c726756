"""Where a py-spy profile's time goes: top frames by own (leaf) and inclusive share of the busy samples.

    py-spy record --pid PID --rate 100 --duration 20 --format raw -o api.txt
    uv run python loadtests/profile_top.py api.txt [--top 25] [--match executor]

Samples whose leaf is an idle wait (epoll/select, a blocking queue get, a sleeping thread) are left out, so
the shares are of the time the process was actually on CPU (or holding the GIL to get there).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

#: Leaf frames that mean "waiting, not working".
IDLE = re.compile(r"\b(select|poll|epoll|_run_once|wait|acquire|sleep|get|accept|recv_into|_worker|readline)\b \(")


def _frames(stack: str) -> list[str]:
    frames = [frame.strip() for frame in stack.split(";") if frame.strip()]
    return [re.sub(r":\d+\)$", ")", frame) for frame in frames]  # line numbers apart: one entry per function


def summarise(path: str, top: int, match: str, thread: str = "") -> None:
    own, inclusive = Counter(), Counter()
    busy = total = 0
    with open(path) as lines:
        for line in lines:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            if thread and thread not in stack:  # recorded with --threads: keep one thread's samples
                continue
            total += n
            frames = _frames(stack)
            if not frames or IDLE.search(frames[-1]):
                continue
            busy += n
            own[frames[-1]] += n
            for frame in set(frames):
                inclusive[frame] += n
    print(f"{path}: {busy} busy of {total} samples ({100 * busy / max(total, 1):.0f} %)")
    print("own time (leaf frames):")
    for frame, n in own.most_common(top):
        print(f"  {100 * n / max(busy, 1):5.1f} %  {frame}")
    print("inclusive time:")
    shown = 0
    for frame, n in inclusive.most_common():
        if match and match not in frame:
            continue
        print(f"  {100 * n / max(busy, 1):5.1f} %  {frame}")
        shown += 1
        if shown >= top:
            break


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="", help="inclusive list: only frames containing this text")
    parser.add_argument("--thread", default="", help="only samples of this thread (a profile taken with --threads)")
    args = parser.parse_args()
    summarise(args.profile, args.top, args.match, args.thread)
