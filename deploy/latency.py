#!/usr/bin/python3
"""Delivery latency, same node against cross node, in one run: a sender and
one receiver on node A, another receiver on node B; the sender sends N
messages one at a time (each after the previous ack) and both receivers
stamp arrival on the same clock. Talks to the nodes directly, not through
the balancer, so placement is known. Needs python3-websockets.

  CONFAB_RATE_LIMIT_PER_SECOND=100000 CONFAB_RATE_LIMIT_BURST=100000 deploy/run-local.sh
  NODE_A=http://127.0.0.1:18081 NODE_B=http://127.0.0.1:18082 N=500 deploy/latency.py
"""
import asyncio, json, os, time, urllib.request, uuid
import websockets

A = os.environ.get("NODE_A", "http://127.0.0.1:18081")
B = os.environ.get("NODE_B", "http://127.0.0.1:18082")
ADMIN = os.environ.get("CONFAB_ADMIN_TOKEN", "local-admin")
N = int(os.environ.get("N", "500"))


def admin(path, body):
    req = urllib.request.Request(A + path, json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": "Bearer " + ADMIN,
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as reply:
        return json.load(reply)


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] * 1000


async def receive(ws, sent, arrived):
    while len(arrived) < N:
        frame = json.loads(await ws.recv())
        if frame["event"] == "chat:message":
            cmid = frame["data"]["message"]["client_msg_id"]
            arrived[cmid] = time.perf_counter() - sent[cmid]


async def main():
    company = admin("/admin/companies", {"name": "Latency"})["id"]
    users = [admin("/admin/users", {"company_id": company, "display_name": n})["id"]
             for n in ("sender", "same", "cross")]
    tokens = [admin(f"/admin/users/{u}/tokens", {})["token"] for u in users]
    thread = admin("/admin/threads", {"company_id": company, "title": "latency", "member_ids": users})["id"]
    ws = lambda base, token: websockets.connect(base.replace("http", "ws") + "/ws?token=" + token)
    async with ws(A, tokens[0]) as sender, ws(A, tokens[1]) as same, ws(B, tokens[2]) as cross:
        for s in (sender, same, cross):
            assert json.loads(await s.recv())["event"] == "chat:ready"
        sent, same_at, cross_at = {}, {}, {}
        receivers = [asyncio.create_task(receive(same, sent, same_at)),
                     asyncio.create_task(receive(cross, sent, cross_at))]
        for i in range(N):
            cmid = str(uuid.uuid4())
            sent[cmid] = time.perf_counter()
            await sender.send(json.dumps({"event": "chat:send", "ref": str(i), "data": {
                "thread_id": thread, "client_msg_id": cmid, "body": f"m{i}"}}))
            while True:
                reply = json.loads(await sender.recv())
                if reply.get("ref") == str(i):
                    break
            # Raise the nodes' CONFAB_RATE_LIMIT_* or sends are refused.
            assert reply["event"] == "chat:ack", reply
        await asyncio.wait_for(asyncio.gather(*receivers), 30)
    for name, at in (("same node", same_at), ("cross node", cross_at)):
        v = list(at.values())
        print(f"{name}: n={len(v)} p50={pct(v, 50):.2f} ms p99={pct(v, 99):.2f} ms max={max(v) * 1000:.2f} ms")


asyncio.run(main())
