#!/usr/bin/env python3
"""Check a running Hearth API with the official `openai` Python package (a client nobody here wrote).

It lists the models, asks for chat and text completions whole and streamed, checks that streamed
and whole greedy answers agree and that a seed reproduces a sampled answer, provokes the errors a
client should get (400 past max_tokens, 401 with a wrong token, 404 for an unknown model, 429 past
the concurrent-request limit) and parses /metrics with `prometheus_client`. Prints what it did and
exits non-zero on the first failure.

Setup and run (docs/API.md has the recorded output):

    python3 -m venv /work/venv-openai
    /work/venv-openai/bin/pip install openai prometheus-client
    hearth serve --api-token s3cret &          # prints "serving ... on http://127.0.0.1:11435/v1"
    /work/venv-openai/bin/python tools/openai_client_check.py \
        --base-url http://127.0.0.1:11435/v1 --token s3cret --expect Paris
"""

import argparse
import json
import sys
import threading
import time
import urllib.request

import openai
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


def get(base, path, token):
    req = urllib.request.Request(base + path)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.headers.get("content-type", ""), r.read().decode()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", default="http://127.0.0.1:11435/v1")
    ap.add_argument("--token", default=None, help="the API token (--api-token of hearth serve)")
    ap.add_argument("--model", default="hearth-community")
    ap.add_argument("--expect", default="", help="text the greedy answer about France must contain")
    ap.add_argument("--max-tokens", type=int, default=24)
    args = ap.parse_args()
    root = args.base_url.rstrip("/").removesuffix("/v1")
    print(f"openai {openai.__version__} against {args.base_url}", flush=True)
    client = OpenAI(base_url=args.base_url, api_key=args.token or "unused", max_retries=0, timeout=300)

    ids = [m.id for m in client.models.list()]
    print(f"models: {ids}")
    check(args.model in ids and "base" in ids, f"GET /v1/models lists {args.model} and base")
    check(client.models.retrieve(args.model).id == args.model, "GET /v1/models/{id}")

    question = [{"role": "user", "content": "What is the capital of France?"}]
    t = time.monotonic()
    chat = client.chat.completions.create(
        model=args.model, messages=question, max_tokens=args.max_tokens, temperature=0
    )
    secs = time.monotonic() - t
    answer = chat.choices[0].message.content
    print(f"chat: {answer!r} finish={chat.choices[0].finish_reason} usage={chat.usage.model_dump()} in {secs:.2f} s")
    check(chat.object == "chat.completion" and chat.choices[0].message.role == "assistant", "chat completion shape")
    check(chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens, "usage adds up")
    check(args.expect in answer, f"the answer contains {args.expect!r}")

    t = time.monotonic()
    first = None
    pieces = []
    usage = None
    finish = None
    stream = client.chat.completions.create(
        model=args.model,
        messages=question,
        max_tokens=args.max_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.content:
                if first is None:
                    first = time.monotonic() - t
                pieces.append(c.delta.content)
            if c.finish_reason:
                finish = c.finish_reason
    secs = time.monotonic() - t
    streamed = "".join(pieces)
    rate = usage.completion_tokens / secs if usage and secs > 0 else 0.0
    print(
        f"chat stream: {len(pieces)} pieces, first after {first or 0:.2f} s, "
        f"{usage.completion_tokens if usage else '?'} tokens in {secs:.2f} s ({rate:.1f} tokens/s), finish={finish}"
    )
    check(streamed == answer, "the streamed answer equals the whole one")
    check(usage is not None and usage.completion_tokens == chat.usage.completion_tokens, "usage chunk at the end")

    comp = client.completions.create(
        model=args.model, prompt="The capital of France is", max_tokens=8, temperature=0
    )
    print(f"completion: {comp.choices[0].text!r} finish={comp.choices[0].finish_reason}")
    check(comp.object == "text_completion", "text completion shape")
    check(args.expect in comp.choices[0].text, f"the completion contains {args.expect!r}")
    text = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model=args.model, prompt="The capital of France is", max_tokens=8, temperature=0, stream=True
        )
        if c.choices
    )
    check(text == comp.choices[0].text, "the streamed completion equals the whole one")

    sampled = [
        client.chat.completions.create(
            model=args.model, messages=question, max_tokens=12, temperature=0.9, top_p=0.95, seed=7
        ).choices[0].message.content
        for _ in range(2)
    ]
    print(f"sampled with seed 7: {sampled[0]!r}")
    check(sampled[0] == sampled[1], "the same seed gives the same sampled answer")
    # A stop string taken from the middle of the greedy completion cuts it there.
    whole = comp.choices[0].text
    if len(whole) >= 4:
        stop = whole[len(whole) // 2 :][:2]
        stopped = client.completions.create(
            model=args.model, prompt="The capital of France is", max_tokens=8, temperature=0, stop=[stop]
        )
        cut = stopped.choices[0]
        check(
            cut.text == whole[: whole.index(stop)] and cut.finish_reason == "stop",
            f"stop={stop!r} ends the text: {cut.text!r}",
        )
    else:
        print(f"note: the completion {whole!r} is too short to test a stop string")

    _, status = get(root, "/status", args.token)
    status = json.loads(status)
    cap = status["api"]["max_tokens"]
    try:
        client.completions.create(model=args.model, prompt="x", max_tokens=cap + 1)
        check(False, "max_tokens past the cap is refused")
    except openai.BadRequestError as e:
        check(e.status_code == 400, f"max_tokens {cap + 1} > {cap}: 400 {e.body['message']!r}")
    try:
        client.chat.completions.create(model="gpt-4o", messages=question)
        check(False, "an unknown model is refused")
    except openai.NotFoundError as e:
        check(e.status_code == 404, f"unknown model: 404 {e.body['message']!r}")
    if args.token:
        wrong = OpenAI(base_url=args.base_url, api_key="wrong", max_retries=0)
        try:
            wrong.models.list()
            check(False, "a wrong token is refused")
        except openai.AuthenticationError as e:
            check(e.status_code == 401, f"wrong token: 401 {e.body['message']!r}")

    # Fill every generation slot with streams that have started, then ask once more.
    slots = status["api"]["max_concurrent"]
    started = threading.Barrier(slots + 1)
    results = []

    def hold():
        s = client.completions.create(
            model=args.model, prompt="Once upon a time", max_tokens=min(cap, 48), temperature=0, stream=True
        )
        it = iter(s)
        next(it)
        started.wait()
        results.append(sum(1 for _ in it))

    threads = [threading.Thread(target=hold) for _ in range(slots)]
    for th in threads:
        th.start()
    started.wait()
    running = json.loads(get(root, "/status", args.token)[1])["api"]["running"]
    try:
        client.completions.create(model=args.model, prompt="x", max_tokens=1)
        busy = None
    except openai.RateLimitError as e:
        busy = e
    for th in threads:
        th.join()
    if running == slots:
        check(busy is not None and busy.status_code == 429, f"all {slots} slots busy: 429 {busy.body['message'] if busy else ''!r}")
    else:
        print(f"note: the {slots} streams finished before the extra request ({running} running): 429 not provoked")
    check(len(results) == slots, f"the {slots} streams that held the slots completed")

    content_type, text = get(root, "/metrics", args.token)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    check(content_type.startswith("text/plain; version=0.0.4"), f"/metrics content type {content_type}")
    generated = families["hearth_tokens_generated"].samples[0].value
    requests = {
        (s.labels["route"], s.labels["status"]): s.value for s in families["hearth_api_requests"].samples
    }
    check(generated > 0, f"prometheus_client parses /metrics: {len(families)} families, {generated:.0f} tokens generated")
    check(requests.get(("/v1/completions", "400"), 0) >= 1, "the 400 is counted")
    check(requests.get(("/v1/chat/completions", "404"), 0) >= 1, "the 404 is counted")
    print(f"tokens/s of the last request: {families['hearth_tokens_per_second'].samples[0].value:.1f}")
    print("all checks passed")


if __name__ == "__main__":
    main()
