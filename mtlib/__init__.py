"""mtlib: polyphonic music transcription on MusicNet (CTC and Seq2Seq on one audio encoder).

The library holds every decision; `stages/` only wires it into DVC. Heavy modules (torch) are
imported by the submodules that need them, so `import mtlib` stays cheap.
"""
from mtlib.notes import Note

__all__ = ["Note"]
