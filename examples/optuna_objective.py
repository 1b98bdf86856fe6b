"""An Optuna objective as Optuna's own PyTorch example writes one, on scikit-learn's digits (offline, seconds a trial).

The model is an MLP of 1 to 3 layers, each with its own width and dropout (suggested only for the layers the trial
has), trained by Adam, RMSprop or SGD; the validation accuracy is reported after every epoch, and the trial stops
when the pruner says so. Nothing in it knows hpsearch. Run it with plain Optuna (``python
examples/optuna_objective.py``) or, unchanged, with everything hpsearch adds around a trial::

    hpsearch run --objective examples/optuna_objective.py:objective --direction maximize --n-trials 20 --jobs 2
    hpsearch export optuna_objective-tpe --out best.json && hpsearch train --config best.json

The data split and every trial's initialization and shuffling are seeded, so the same params give the same
accuracy on a CPU: the exported best trial, run again, scores what it scored in the study.
"""

from __future__ import annotations

import functools

import optuna
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn, optim
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

BATCHSIZE = 128
CLASSES = 10
EPOCHS = 10
SEED = 0


def define_model(trial: optuna.trial.BaseTrial) -> nn.Sequential:
    """An MLP whose depth, widths and dropouts the trial chooses (a layer's width and dropout only if it has it)."""
    n_layers = trial.suggest_int("n_layers", 1, 3)
    layers: list[nn.Module] = []
    in_features = 64  # 8 x 8 pixels
    for i in range(n_layers):
        out_features = trial.suggest_int(f"n_units_l{i}", 4, 128)
        layers.append(nn.Linear(in_features, out_features))
        layers.append(nn.ReLU())
        p = trial.suggest_float(f"dropout_l{i}", 0.2, 0.5)
        layers.append(nn.Dropout(p))
        in_features = out_features
    layers.append(nn.Linear(in_features, CLASSES))
    layers.append(nn.LogSoftmax(dim=1))
    return nn.Sequential(*layers)


@functools.cache
def get_digits() -> tuple[TensorDataset, TensorDataset]:
    """Digits split 80/20 (a fixed split), pixels scaled to [0, 1]: the train and validation sets."""
    digits = load_digits()
    x_train, x_val, y_train, y_val = train_test_split(digits.data / 16.0, digits.target, test_size=0.2,
                                                      random_state=SEED, stratify=digits.target)
    as_tensors = functools.partial(torch.tensor, dtype=torch.float32)
    return (TensorDataset(as_tensors(x_train), torch.tensor(y_train)),
            TensorDataset(as_tensors(x_val), torch.tensor(y_val)))


def objective(trial: optuna.trial.BaseTrial) -> float:
    """Train the trial's model for EPOCHS epochs and return its validation accuracy."""
    torch.manual_seed(SEED)
    model = define_model(trial)
    optimizer_name = trial.suggest_categorical("optimizer", ["Adam", "RMSprop", "SGD"])
    lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    optimizer = getattr(optim, optimizer_name)(model.parameters(), lr=lr)

    train_set, valid_set = get_digits()
    train_loader = DataLoader(train_set, batch_size=BATCHSIZE, shuffle=True,
                              generator=torch.Generator().manual_seed(SEED))
    valid_loader = DataLoader(valid_set, batch_size=BATCHSIZE)

    accuracy = 0.0
    for epoch in range(EPOCHS):
        model.train()
        for data, target in train_loader:
            optimizer.zero_grad()
            loss = F.nll_loss(model(data), target)
            loss.backward()
            optimizer.step()

        model.eval()
        correct = 0
        with torch.no_grad():
            for data, target in valid_loader:
                pred = model(data).argmax(dim=1, keepdim=True)
                correct += pred.eq(target.view_as(pred)).sum().item()
        accuracy = correct / len(valid_set)

        trial.report(accuracy, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()

    return accuracy


if __name__ == "__main__":
    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=20)
    print(f"best accuracy {study.best_value:.4f} with {study.best_params}")
