"""The `charlm` commands that need more than a screen: train and sample. cli.py holds the group, the
smaller commands, and registers these."""
