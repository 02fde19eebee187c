"""What went out and how it did: ``GET Reports/EmailCampaign`` of the contract (the metric curves
of :mod:`.metrics` at the simulated now) and the admin read-back ``GET /_sim/sent``."""

from __future__ import annotations

import collections
from typing import Any

from .accounts import Account
from .campaigns import Campaigns
from .clock import iso
from .errors import SimError
from .metrics import metrics_at


class Reports:
    """Metrics and sends of the campaigns of the simulated world; ``seed`` seeds the curves."""

    def __init__(self, campaigns: Campaigns, seed: str):
        self._campaigns = campaigns
        self.seed = seed

    def report(self, account: Account, camp_id: int) -> dict[str, Any]:
        """``GET Reports/EmailCampaign?id=``: the metric curves at the simulated now."""
        with self._campaigns.lock:
            c = self._campaigns.find(account, camp_id)
            if c.sent_at is None:
                raise SimError(409, "Campaign has not been sent yet.")
            now = self._campaigns.clock.now()
            counts = metrics_at(self.seed, c.camp_id, c.recipient_count, now - c.sent_at)
            return {"campId": c.camp_id, "asOf": iso(now), **counts}

    def sent(self, with_recipients: bool = True) -> dict[str, Any]:
        """``GET /_sim/sent``: every campaign that went out, and how many duplicate sends there
        are (campaigns sharing template, list and start time with another sent campaign)."""
        with self._campaigns.lock:
            out = []
            groups: collections.Counter = collections.Counter()
            for c in sorted(self._campaigns.by_id.values(), key=lambda c: c.camp_id):
                if not c.send_count:
                    continue
                groups[(c.template_obj_id, c.list_id, c.start_time)] += 1
                item = {
                    "campId": c.camp_id, "name": c.name, "templateObjId": c.template_obj_id,
                    "listId": c.list_id, "startTime": iso(c.start_time), "status": c.status,
                    "sendCount": c.send_count, "sentAt": iso(c.sent_at), "recipientCount": c.recipient_count,
                }
                if with_recipients:
                    item["recipients"] = self._campaigns.rows.sent_rows(c.camp_id)
                out.append(item)
            duplicates = sum(n for n in groups.values() if n > 1)
            return {"campaigns": out, "duplicates": duplicates}
