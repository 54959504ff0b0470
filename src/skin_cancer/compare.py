"""Choose the champion: among the given versions of the registered model, the best test
accuracy wins; a tie goes to the earliest registered version (deterministic). The winner
gets the MLflow alias `champion` (aliases, not the deprecated stages)."""

from __future__ import annotations

import mlflow

from skin_cancer import CHAMPION, REGISTERED_MODEL


class NoCandidates(ValueError):
    pass


def best_of(
    versions: list[str], registered_model: str = REGISTERED_MODEL, client: mlflow.MlflowClient | None = None
) -> tuple[str, float]:
    """The best of `versions` by test accuracy (a tie: the earliest); (version, accuracy)."""
    if not versions:
        raise NoCandidates("no model versions to compare: did every training fail?")
    client = client or mlflow.MlflowClient()
    scored = []
    for number in versions:
        model_version = client.get_model_version(registered_model, number)
        accuracy = client.get_run(model_version.run_id).data.metrics.get("test_accuracy")
        if accuracy is None:
            raise NoCandidates(f"version {number} of {registered_model} has no test_accuracy metric")
        scored.append((accuracy, -int(number), number))
    accuracy, _, winner = max(scored)
    return winner, accuracy


def choose_champion(
    versions: list[str], registered_model: str = REGISTERED_MODEL, client: mlflow.MlflowClient | None = None
) -> tuple[str, float]:
    """Point the `champion` alias at the best of `versions`; return (version, accuracy)."""
    client = client or mlflow.MlflowClient()
    winner, accuracy = best_of(versions, registered_model, client)
    client.set_registered_model_alias(registered_model, CHAMPION, winner)
    return winner, accuracy
