"""The pyfunc model as MLflow's "models from code" loads it: `register` logs this file, and
MLflow runs it (from the logged model's code folder, next to the packages) instead of unpickling
a Python object, so loading a model runs no pickle and the register step prints no pickle
warning."""

from mlflow.models import set_model

from {{ cookiecutter.package }}_training.pyfunc import RecommenderModel

set_model(RecommenderModel())
