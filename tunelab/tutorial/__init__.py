"""The runnable tutorial behind `tunelab quickstart`.

Each step is a function `step_*(session)` in a small module, written only against
the OpenAI API (the official `openai` SDK) plus the local `prepare-data` command, so
what the quickstart prints is exactly what a user would type:

  data.py        1 prepare-data on messy spreadsheets, 2 upload
  finetune.py    3 fine-tune a persona with a live progress bar, 4 base vs fine-tuned
  retrieval.py   5 embeddings and a similarity matrix, 6 a vector store and cited answers
  grounded.py    7 context-grounded fine-tuning (training data in the grounded-answer layout)
  classify.py    8 classification: a fine-tuning job vs embeddings + logistic regression
  quickstart.py  the walk through all steps, and the server it runs against
"""

from tunelab.tutorial.session import examples_dir

EXAMPLES = examples_dir()  # the sample data: <checkout>/examples

__all__ = ["EXAMPLES"]
