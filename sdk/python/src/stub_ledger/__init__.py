"""stub-ledger: put a budget gate in front of any paid call; money moves only after it commits.

    from stub_ledger import Stub
    stub = Stub()                       # STUB_URL, STUB_API_KEY
    with stub.hold("0.04", vendor="data-api", intent="fetch market data") as h:
        fetch_market_data()
"""

from ._http import RetryPolicy
from .client import Delegation, Stub
from .errors import (ApprovalRejected, ApprovalTimeout, BudgetDenied, PaymentRefused,
                     StubError, StubUnavailable, UnknownModel)
from .hold import Hold, HoldContext
from .money import format_micros, to_micros

__all__ = [
    "ApprovalRejected", "ApprovalTimeout", "BudgetDenied", "Delegation", "Hold", "HoldContext",
    "PaymentRefused", "RetryPolicy", "Stub", "StubError", "StubUnavailable", "UnknownModel",
    "format_micros", "to_micros",
]
__version__ = "0.1.0"
