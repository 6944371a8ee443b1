"""`charlm inspect`: looking inside a trained model.

    analysis.py  what the page shows, computed: surprise, cells that follow features of the text,
                 gate saturation, bits per character class against an n-gram (`analyse`, `summary`)
    page.py      the self-contained HTML page (`render`)
    run.py       the command's inputs: a run's model, the text, the n-gram's training text (`inspect_run`)

The scores themselves (bits, surprise) are `charlm/scoring.py`'s, shared with `charlm eval` and the
server; the trace of every layer is `charlm/tracing.py`'s.
"""

# characters inspected by default: the page holds every cell's state for each of them (here, not in
# run.py, which loads torch: `charlm inspect --help` shows it)
MAX_CHARS = 5000
