"""Training: DISC-MedLLM's SFT recipe and DPO on TRL + PEFT, packed, resumable, multi-process.

config   recipes (YAML + key=value) as pydantic models, checked with the data before any model loads
sft      run_sft(recipe) -> summary: formats → labels → packing → SFTTrainer
pack     best-fit-decreasing packing, padding-free, position ids per conversation
dpo      run_dpo(recipe) -> summary: pairs tokenized with the same chat format
merge    LoRA adapter → full weights; export a servable folder
folder   what makes a model folder self-consistent: checked chat template, model card, adapter base
runtime  every recipe key → TRL, precision checks, model loading, loss guard, checkpoints that say
         what they were trained on, resume that refuses a changed recipe
cli      `discmed train sft | dpo | merge | export`; `python -m discmed.train …` for launchers
"""
