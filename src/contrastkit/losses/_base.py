"""The small base of every loss module: shared options, the temperature, one place to check them."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from contrastkit._checks import (
    Reduction,
    check_chunk_size,
    check_memory_budget,
    check_reduction,
    check_temperature,
)

#: Options that several losses take, stored and validated by :class:`LossModule`.
SHARED_OPTIONS = ("normalize", "reduction", "chunk_size", "memory_budget", "gather_distributed")


class LossModule(nn.Module):
    """Base of the loss modules: the thin wrapper around a loss function.

    A subclass passes the shared options its function takes (a subset of ``normalize``,
    ``reduction``, ``chunk_size``, ``memory_budget``, ``gather_distributed``; ``check_values``
    always) to ``super().__init__``, which validates and stores them; :meth:`options` hands them
    back as keyword arguments for the function.

    ``temperature`` (when the loss has one) is a number, a tensor (stored as a buffer, so it
    follows ``.to(device)``), an ``nn.Parameter``, or a module returning ``τ`` such as
    :class:`contrastkit.LearnableTemperature`; :meth:`tau` returns its current value.

    Args:
        temperature: the loss's temperature, or None if it has none.
        check_values: run the value checks (NaN/inf, …; one host sync per call).
        **options: shared options, see above.
    """

    temperature: float | Tensor | nn.Module
    normalize: bool
    reduction: Reduction
    chunk_size: int | None
    memory_budget: int | None
    gather_distributed: bool
    check_values: bool

    def __init__(
        self,
        *,
        temperature: float | Tensor | nn.Module | None = None,
        check_values: bool = True,
        **options: Any,
    ) -> None:
        super().__init__()
        unknown = sorted(set(options) - set(SHARED_OPTIONS))
        if unknown:
            raise TypeError(f"LossModule: unknown shared options {unknown}")
        if "reduction" in options:
            check_reduction(options["reduction"])
        if "chunk_size" in options:
            check_chunk_size(options["chunk_size"])
        if "memory_budget" in options:
            check_memory_budget(options["memory_budget"])
        for name in ("normalize", "gather_distributed"):
            if name in options and not isinstance(options[name], bool):
                raise ValueError(f"{name} must be a bool, got {options[name]!r}")
        if not isinstance(check_values, bool):
            raise ValueError(f"check_values must be a bool, got {check_values!r}")
        self._option_names = (*options, "check_values")
        for name, value in options.items():
            setattr(self, name, value)
        self.check_values = check_values
        if isinstance(temperature, nn.Module):
            self.temperature = temperature
        elif isinstance(temperature, nn.Parameter):
            check_temperature(temperature)
            self.temperature = temperature
        elif isinstance(temperature, Tensor):
            check_temperature(temperature)
            self.register_buffer("temperature", temperature.detach().clone())
        elif temperature is not None:
            check_temperature(temperature)
            self.temperature = temperature

    def options(self) -> dict[str, Any]:
        """The shared options, as keyword arguments of the loss function."""
        return {name: getattr(self, name) for name in self._option_names}

    def tau(self) -> float | Tensor:
        """The current temperature (calls a temperature module)."""
        temperature = self.temperature
        if isinstance(temperature, nn.Module):
            value: Tensor = temperature()
            return value
        return temperature
