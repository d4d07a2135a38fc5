"""The routes, one router per door: operations, public explorer, supplier, finance, admin.

A supplier only ever sees its own devices and payouts: the owner is the token's subject,
never a parameter, and a snapshot or payout that is not theirs is the same 404 as one that
does not exist.
"""

from rewards.api.routes.admin import admin
from rewards.api.routes.finance import finance
from rewards.api.routes.operations import anyone, operations, public
from rewards.api.routes.supplier import supplier

ROUTERS = (operations, public, anyone, supplier, finance, admin)

__all__ = ["ROUTERS"]
