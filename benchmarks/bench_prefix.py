"""Prefix reuse across extraction jobs that share an instruction, measured in one run.

    python benchmarks/bench_prefix.py

Runs 20 `extract` jobs (same instruction, fields and two examples; different texts)
on one resident host, and prints the prompt tokens evaluated per job ÷ the prompt
length (target ≤ 0.30), beside the same jobs with the cache dropped before each job.

Real: everything (the default GGUF model, the host's prefix cache). Simulated: nothing.
The texts are multi-sentence customer messages, so each job's own part of the prompt is
as long as a real one's, not a 20-token line against the shared prefix.
"""

from __future__ import annotations

import time

import results

from taskloom.chat.llama.host import ModelHost
from taskloom.chat.model_file import default_model_path
from taskloom.tools import run_task

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": ["string", "null"], "description": "the customer's full name"},
        "order_id": {"type": ["string", "null"], "description": "the order number"},
        "email": {"type": ["string", "null"], "description": "the email address"},
    },
    "required": ["name", "order_id", "email"],
}
EXAMPLES = [
    {
        "input": {"text": "Hello, I am Rosa Diaz and my order 20231 was damaged. rosa@nypd.org"},
        "output": {"name": "Rosa Diaz", "order_id": "20231", "email": "rosa@nypd.org"},
    },
    {
        "input": {"text": "Please help, order 11111 has not arrived."},
        "output": {"name": None, "order_id": "11111", "email": None},
    },
]
TEXTS = [
    "Hi there, Ann Lee here. I ordered a pair of walking boots from your spring sale on "
    "the 3rd, order 40017, and the box arrived yesterday with the left boot missing. The "
    "packing slip lists both, so I think it was missed at the warehouse. Could you send the "
    "missing boot or tell me how to return the pair? You can reach me at ann.lee@example.com.",
    "Good afternoon. My name is Bo Chen and I have been a customer for years, so this is "
    "unusual. Order 40034 was marked delivered on Monday but nothing came, and my neighbours "
    "have not seen a parcel either. I'd be grateful if you could check with the courier.",
    "Hello, this is Cy Okafor. I was charged twice for order 40051 - once on the 12th and "
    "again on the 14th, both for the full amount. My bank says the second charge is not "
    "pending but settled. Please refund one of them; my email is cy.okafor@example.net.",
    "To whom it may concern, I'm writing about order 40068. The sofa cover I received is "
    "dark green, but I chose the sand colour, and the confirmation email says sand too. I "
    "would like to exchange it before the weekend if possible. Thanks, Di Novak.",
    "Hi, Ed Ruiz again. Last week I asked about the delay on order 40085 and was told it "
    "would ship within two days. It still says 'processing'. Is there a problem with stock? "
    "If it can't ship this week I'd rather cancel. Reply to ed.ruiz@example.org please.",
    "Dear support team, the coffee grinder from order 40102 stopped working after three "
    "uses. It makes a clicking sound and the blades do not turn. I have kept the receipt "
    "and the original box. What do you need from me to start a repair? Regards, Fay Moreau.",
    "Hello! Gus Petrov writing. I moved house last month and only now noticed that order "
    "40119 was sent to my old address in Leeds. Could you redirect it, or resend it to the "
    "new one once it comes back? My new details are in my account. gus.p@example.com",
    "Hi, I'm Hana Sato. The size chart on your site says a medium fits a 96 cm chest, but "
    "the jacket from order 40136 is far too tight. I'd like to swap it for a large. Is "
    "there a fee for exchanges, and do I need a label from you?",
    "Good morning, this is Ivo Brandt. I received order 40153 today, thank you, but the "
    "glass teapot was broken in the box. There was very little padding around it. I have "
    "taken photos of the damage and can send them. Contact me at ivo.brandt@example.de.",
    "Hello, my name is Jun Park. I placed order 40170 as a gift and chose gift wrapping at "
    "checkout, but the parcel came unwrapped and with the invoice inside, which spoiled "
    "the surprise. Could you refund the wrapping charge at least?",
    "Hi team, Kai Lindqvist here. My subscription renewed yesterday under order 40187 even "
    "though I cancelled it in March. I have the cancellation confirmation in my inbox. "
    "Please cancel it and refund the charge. My email is kai.l@example.se.",
    "Dear sir or madam, I am Lena Vogel and I am disappointed with order 40204. The "
    "description said the blender was dishwasher safe, but the manual says the jug must "
    "be washed by hand. I would like to return it for a full refund.",
    "Hello again, Milo Ferrante speaking. The replacement you sent for order 40221 has the "
    "same fault as the first one: the screen flickers after a few minutes. I don't want a "
    "third one. Could you arrange a refund instead? milo.ferrante@example.it",
    "Hi, this is Nia Adeyemi. I tried to use the discount code from your newsletter on "
    "order 40238 and it was rejected at checkout, so I paid full price. The code was "
    "valid until the end of the month. Can you apply the discount retrospectively?",
    "Good evening, Omar Haddad here. Order 40255 arrived with the wrong charger: it has a "
    "US plug and I live in the UK. The listing said UK plug. Please send the right one; "
    "I'll post the wrong one back. You can email me at omar.haddad@example.co.uk.",
    "Hello, I'm Pia Jensen. I ordered two matching lamps in order 40272 but only one was "
    "delivered, and the tracking shows a single parcel. Was the order split? If the second "
    "lamp is out of stock I would like to know when it will be back.",
    "Hi, Quinn Murphy here. I'm a teacher and ordered 30 workbooks for my class under "
    "order 40289. We received 25. The term starts on Monday, so I need the other five "
    "quickly. Could they go by express post? Reach me at q.murphy@example.ie.",
    "Dear support, my name is Rosa Diaz. The rug from order 40306 smells strongly of "
    "chemicals, even after airing it for a week. I'm worried about my children and pets. "
    "Is this normal for this product, or should I send it back?",
    "Hello, Sami Laine writing. I can't download the e-book I bought in order 40323; the "
    "link in the email says it has expired. I only bought it two days ago. Could you send "
    "a new link? My email address is sami.laine@example.fi.",
    "Hi there, this is Tara Singh. Order 40340 included a free sample I did not ask for, "
    "and I'm allergic to one of its ingredients. Please remove me from the sample list "
    "and make sure it isn't added to future orders.",
]
"""Customers' messages of three to five sentences, half
with an email address: the texts a support inbox gets, not one-line stubs."""


def run_jobs(host: ModelHost, *, cold: bool) -> tuple[int, int, float]:
    evaluated = total = 0
    started = time.perf_counter()
    for text in TEXTS:
        if cold:
            host.reset_cache()
        out = run_task("extract", {"text": text, "examples": EXAMPLES}, output=SCHEMA, model=host)
        evaluated += out.usage.prompt_tokens_evaluated
        total += out.usage.prompt_tokens
    return evaluated, total, time.perf_counter() - started


def main() -> None:
    host = ModelHost(default_model_path())
    # One untimed job first, so that neither pass pays the process's warm-up.
    run_task("extract", {"text": "warm-up", "examples": EXAMPLES}, output=SCHEMA, model=host)
    host.reset_cache()
    warm_eval, warm_total, warm_s = run_jobs(host, cold=False)
    cold_eval, cold_total, cold_s = run_jobs(host, cold=True)
    host.close()
    n = len(TEXTS)
    print(f"{n} extract jobs, prompt length {warm_total / n:.0f} tokens on average")
    print(f"{'':26}{'evaluated/job':>14}{'ratio':>8}{'wall':>9}")
    print(
        f"{'prefix reused':26}{warm_eval / n:>14.1f}{warm_eval / warm_total:>8.2f}{warm_s:>8.1f}s"
    )
    print(
        f"{'cache dropped each job':26}{cold_eval / n:>14.1f}{cold_eval / cold_total:>8.2f}"
        f"{cold_s:>8.1f}s"
    )
    ratio = warm_eval / warm_total
    print(f"target: ratio <= 0.30 (first job included) -> {'met' if ratio <= 0.3 else 'NOT met'}")
    results.record(
        "bench_prefix",
        real="the default GGUF model and the host's prefix cache",
        simulated="nothing",
        rows=[
            results.Row(
                what=f"prompt tokens evaluated per job ÷ prompt length, {n} extractions of "
                "multi-sentence texts",
                measured=f"{ratio:.2f} ({warm_eval / n:.0f} of {warm_total / n:.0f} tokens; "
                f"{cold_eval / cold_total:.2f} with the cache dropped)",
                target="≤ 0.30",
                met=ratio <= 0.3,
            )
        ],
    )


if __name__ == "__main__":
    main()
