#!/usr/bin/python3
"""Smoke test of a running cluster behind a load balancer (deploy/run-local.sh):
two users connect through the balancer (round robin puts them on different
nodes), one sends, the other must receive it. Needs python3-websockets."""
import asyncio, json, os, sys, urllib.request, uuid
import websockets

BASE = os.environ.get("LB", "http://127.0.0.1:18090")
ADMIN = os.environ.get("CONFAB_ADMIN_TOKEN", "local-admin")


def admin(path, body):
    req = urllib.request.Request(BASE + path, json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": "Bearer " + ADMIN,
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as reply:
        return json.load(reply)


async def main():
    company = admin("/admin/companies", {"name": "Smoke"})["id"]
    users = [admin("/admin/users", {"company_id": company, "display_name": n})["id"] for n in ("ann", "bob")]
    tokens = [admin(f"/admin/users/{u}/tokens", {})["token"] for u in users]
    thread = admin("/admin/threads", {"company_id": company, "title": "smoke", "member_ids": users})["id"]
    ws_base = BASE.replace("http", "ws") + "/ws?token="
    async with websockets.connect(ws_base + tokens[0]) as ann, websockets.connect(ws_base + tokens[1]) as bob:
        for ws in (ann, bob):
            ready = json.loads(await ws.recv())
            assert ready["event"] == "chat:ready", ready
        await ann.send(json.dumps({"event": "chat:send", "ref": "1", "data": {
            "thread_id": thread, "client_msg_id": str(uuid.uuid4()), "body": "hello through the balancer"}}))
        while True:
            frame = json.loads(await asyncio.wait_for(bob.recv(), 10))
            if frame["event"] == "chat:message":
                print("bob got:", frame["data"]["message"]["body"], "seq", frame["data"]["message"]["seq"])
                return 0


sys.exit(asyncio.run(main()))
