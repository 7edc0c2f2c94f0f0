"""`python -m discmed.train sft --config recipes/tiny.yaml`: the launcher-friendly entry point.

`accelerate launch -m discmed.train sft …` and `torchrun --nproc_per_node 8 -m discmed.train sft …`
run the same code as `discmed train sft …`, one process per device.
"""

from discmed.train.cli import main

main()
