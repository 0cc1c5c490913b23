"""Switchyard's runtime: open it inside your trio program and talk to it through its handle.

async with open_runtime([provider_a, provider_b]) as rt:
    response = await rt.complete([{"role": "user", "content": "Hello"}])
"""

from actors import (
    BudgetConfig,
    BudgetExceeded,
    ModelPrice,
    ProviderSpec,
    RuleClassifier,
    RuntimeHealth,
    TaskClassifier,
)
from protocols import LLMProvider

from ._client import UnifiedLLMClient
from ._config import RouterConfig, RuntimeConfig
from ._owner import EventStream
from ._runtime import ROUTER, Runtime, open_runtime, text_chunks

__all__ = [
    "ROUTER",
    "BudgetConfig",
    "BudgetExceeded",
    "EventStream",
    "LLMProvider",
    "ModelPrice",
    "ProviderSpec",
    "RouterConfig",
    "RuleClassifier",
    "Runtime",
    "RuntimeConfig",
    "RuntimeHealth",
    "TaskClassifier",
    "UnifiedLLMClient",
    "open_runtime",
    "text_chunks",
]
