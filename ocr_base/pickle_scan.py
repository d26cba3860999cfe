"""A dry run of a pickle before it is unpickled: its costs, bounded before anything is built.

    scan_pickle(f, file) -> None   raises CheckpointError if the pickle is over a budget

CPython's unpickler trusts the byte stream for sizes: a memo index of 2^27 resizes the memo to a
gigabyte, an 8-byte length asks for that many bytes, and a few hundred bytes of DUP / memo GETs
build a DAG of tuples (each level holding the one below twice) whose hash, repr or tree walk never
ends. So before unpickling we walk the opcodes (`pickletools.genops`, which only reads) and model
the stack: each value carries its size as a tree (1 + the sizes of what it was built from) and its
depth. Refused, naming the file:

  more than MAX_OPS opcodes;  a memo index over MAX_MEMO;  a FRAME or a length running off the end;
  a value deeper than MAX_DEPTH or larger than MAX_TREE nodes when unshared;  more than MAX_WORK
  nodes handed in all to the operations whose cost is their input's tree size (calls, which copy
  their arguments; dict/set inserts, which hash their keys).

A real state dict costs about 30 opcodes and 30 nodes per tensor, so the budgets admit ~30,000
tensors while the unpickler's own memory stays under a few hundred MB.

Reference: the opcode table and stack effects of the standard library's `pickletools`.
"""
from __future__ import annotations

import pickletools

MAX_OPS = 1_000_000
MAX_MEMO = 1_000_000
MAX_DEPTH = 64
MAX_TREE = 10_000_000
MAX_WORK = 20_000_000

# Opcodes whose cost is the tree size of their inputs (they copy or hash them).
_COSTLY = {"REDUCE", "BUILD", "NEWOBJ", "NEWOBJ_EX", "OBJ", "INST", "SETITEM", "SETITEMS", "ADDITEMS", "FROZENSET"}
_GETS = {"GET", "BINGET", "LONG_BINGET"}
_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}


def scan_pickle(f, file, what: str = "pickle", error=ValueError) -> None:
    """Walk one pickle from f's position to its STOP; f is left after it. Raises `error` on a budget."""
    def refuse(msg):
        raise error(f"{file}: {what}: {msg} (corrupt, or built to exhaust memory or time)")

    end = _size(f)
    stack, marks, memo = [], [], {}  # stack items: (tree size, depth)
    work = 0
    try:
        for n, (op, arg, pos) in enumerate(pickletools.genops(f)):
            if n >= MAX_OPS:
                refuse(f"more than {MAX_OPS:,} opcodes")
            name = op.name
            if name == "FRAME" and arg > end - f.tell():
                refuse(f"frame of {arg} bytes runs past the end of the data")
            if name in _PUTS or name == "MEMOIZE":
                key = len(memo) if name == "MEMOIZE" else arg
                if not 0 <= key <= MAX_MEMO:
                    refuse(f"memo index {key} is over the limit of {MAX_MEMO:,}")
                if not stack:
                    refuse("memo store on an empty stack")
                memo[key] = stack[-1]
                continue
            if name in _GETS:
                if arg not in memo:
                    refuse(f"memo index {arg} read before it was stored")
                stack.append(memo[arg])
                continue
            if name == "DUP":
                if not stack:
                    refuse("DUP on an empty stack")
                stack.append(stack[-1])
                continue
            if name == "MARK":
                marks.append(len(stack))
                continue
            popped = _pop(stack, marks, op.stack_before, refuse)
            size = 1 + sum(s for s, _ in popped)
            depth = 1 + max((d for _, d in popped), default=0)
            if name in _COSTLY:
                work += size
                if work > MAX_WORK:
                    refuse(f"more than {MAX_WORK:,} nodes copied or hashed")
            if size > MAX_TREE:
                refuse(f"a value of more than {MAX_TREE:,} nodes when unshared")
            if depth > MAX_DEPTH:
                refuse(f"values nested too deeply (over {MAX_DEPTH} levels)")
            stack.extend([(size, depth)] * len(op.stack_after))
    except (ValueError, TypeError, OverflowError, EOFError, IndexError, KeyError) as e:
        if isinstance(e, error):
            raise
        raise error(f"{file}: cannot read {what} (truncated or corrupt?): {type(e).__name__}: {e}") from None


def _pop(stack, marks, before, refuse):
    """Pop what an opcode consumes: the items after the last MARK for a stack slice, then the rest."""
    popped = []
    names = [s.name for s in before]
    if "mark" in names:
        if not marks:
            refuse("stack slice without a MARK")
        k = marks.pop()
        popped, stack[k:] = stack[k:], []
        names = names[: names.index("mark")]
    if len(stack) < len(names):
        refuse("stack underflow")
    if names:
        popped += stack[-len(names):]
        del stack[-len(names):]
    return popped


def _size(f) -> int:
    """Total length of a seekable stream (its position is kept)."""
    here = f.tell()
    f.seek(0, 2)
    end = f.tell()
    f.seek(here)
    return end
