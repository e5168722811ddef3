"""Triage a support email: extract, classify, look up the order, filter the KB, reply.

Run it:  taskloom run examples/triage.py:triage --input @examples/triage_input.json
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from taskloom import Flow, tool, workflow


class Contact(BaseModel):
    name: str | None
    order_id: str | None


ORDERS = {"A-1042": {"item": "teapot", "status": "delivered"}}


@tool
def lookup_order(order_id: str | None) -> dict[str, Any]:
    """The order with this id, or an empty record."""
    return ORDERS.get(order_id or "", {})


@workflow(tools=[lookup_order])
def triage(flow: Flow, email: str, kb: list[str]) -> dict[str, Any]:
    contact = flow.extract(email, output=Contact, copy=True, id="contact")
    intent = flow.classify(email, labels=["refund", "shipping", "other"], id="intent")
    order = flow.call(lookup_order, order_id=contact["order_id"], id="order")
    docs = flow.filter(intent["label"], kb, top_k=2, id="docs")
    if intent["label"].result() == "refund":  # control flow waits for just this value
        ask = f"Tell {contact['name']} the refund for order {contact['order_id']} is on its way."
    else:
        ask = f"Answer {contact['name']}'s question briefly."
    reply = flow.generate(ask, context={"order": order, "policy": docs["kept"]}, id="reply")
    return {"who": contact["name"], "intent": intent["label"], "reply": reply["text"]}
