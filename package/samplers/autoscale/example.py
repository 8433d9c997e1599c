"""AutoScale on a simulated 5-domain landscape: the design at two small budgets, then the mixture
extrapolated to a 10x larger budget and the verification runs (about half a minute on a laptop).

The objective stands in for training a proxy language model on the suggested mixture: replace
``land.per_domain_loss`` with your trainer, which trains on ``mix.allocation`` tokens per domain with
seed ``mix.seed`` and returns the validation loss of each domain.
"""

from __future__ import annotations

import optuna
import optunahub

from optuna_autoscale.simulate import separable


optuna.logging.set_verbosity(optuna.logging.WARNING)
autoscale = optunahub.load_module(package="samplers/autoscale")

land = separable(5, seed=0, noise=0.0005, seed_noise=0.02)  # domains d0..d4 with a known optimum


def objective(trial: optuna.trial.Trial) -> float:
    mix = autoscale.suggest_mixture(trial, land.domains)  # the sampler picks weights, tokens and seed
    losses = land.per_domain_loss(mix.allocation, seed=mix.seed)  # <- train and evaluate here
    for domain, loss in losses.items():
        trial.set_user_attr(f"loss_{domain}", loss)  # per-domain losses switch on the transfer law
    return sum(losses.values()) / len(losses)


sampler = autoscale.AutoScaleSampler(land.domains, budgets=[1e8, 4e8], seed=0)
study = optuna.create_study(sampler=sampler)
study.optimize(objective, n_trials=200)  # stops by itself once the design and verification are done
print(f"{len(study.trials)} runs; design complete: {sampler.is_complete(study)}")

result = autoscale.AutoScaleResult.from_study(study)
for budget, mixture in sorted(result.optima.items()):
    print(f"optimal weights at {budget:.0e} tokens:", {d: round(w, 3) for d, w in mixture.weights.items()})
target = 4e9
mixture = result.extrapolate(target)
print(f"extrapolated to {target:.0e} tokens:", {d: round(w, 3) for d, w in mixture.weights.items()})
uniform = {d: target / len(land.domains) for d in land.domains}
print(f"true loss at {target:.0e}: extrapolated {land.true_loss(mixture.allocation):.4f}, "
      f"uniform {land.true_loss(uniform):.4f}, oracle {land.true_loss(land.oracle(target)):.4f}")
for row in result.verification():
    print(f"{row['check']} at {row['budget']:.2g}: {row['verdict']}")
