"""CNN skin-lesion classification: data, preprocessing, models, training, champion.

Keras reads KERAS_BACKEND once, when it is first imported, and MLflow's loader does not
set it; so this package sets it (PyTorch). Importing any skin_cancer module runs this file
first, so every module of ours that imports Keras gets the right backend; a process that
only loads a model (serving, a notebook) must `import skin_cancer` before Keras or MLflow.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

CLASSES = ("benign", "malignant")  # the label of a class is its index: benign 0, malignant 1
REGISTERED_MODEL = "skin_cancer_cnn"
CHAMPION = "champion"
