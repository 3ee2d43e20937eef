#!/usr/bin/env python3
"""The "AI agent": calls the LLM through the ward agent's egress proxy, with no key at all."""
import json
import os
import sys
import time
import urllib.request

keys = [name for name in os.environ if "KEY" in name or "TOKEN" in name]
print(f"agent: credentials in my environment: {keys or 'none'}")

request = urllib.request.Request(
    "http://127.0.0.1:8100/openai/v1/chat/completions",
    data=json.dumps({"model": "gpt-demo", "stream": True,
                     "messages": [{"role": "user", "content": "Say hello"}]}).encode(),
    headers={"Content-Type": "application/json"},
    method="POST",
)
start = time.monotonic()
with urllib.request.urlopen(request) as response:
    print(f"agent: HTTP {response.status}, streaming:")
    text = ""
    for raw in response:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        delta = json.loads(line[6:])["choices"][0]["delta"]["content"]
        text += delta
        print(f"  +{time.monotonic() - start:5.2f}s {delta!r}")
print(f"agent: model said: {text}")
sys.exit(0 if text.endswith("valid key.") else 1)
