"""The `charlm` commands that need more than a screen: train and sample; and what every command shares
(options.py, completion.py, usage.py: a usage error as one line). cli.py holds the group, the smaller
commands, and registers these."""
