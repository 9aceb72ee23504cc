#!/usr/bin/env python3
"""Stand-ins for the Python kvmd-pst and kvmd-pstrun, for interoperability tests.

Written by the swift-pst project from the protocol contract (PROTOCOL.md),
not taken from kvmd: they speak the same wire protocol with the same
library the reference uses (aiohttp), so our daemon is tested against an
aiohttp WebSocket client, and our client against an aiohttp server.

    pst_peer.py daemon --socket S --data-path P --remount-cmd 'helper --fstab F {mode}'
    pst_peer.py pstrun --socket S -- CMD [ARGS...]
"""
import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys

import aiohttp
from aiohttp import web


def log(level, text):
    print(f"-- {level:>7} -- {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- daemon

class Daemon:
    def __init__(self, data_path, remount_cmd):
        self.data_path = data_path
        self.remount_cmd = remount_cmd
        self.sockets = set()
        self.lock = asyncio.Lock()

    def state(self):
        try:
            writable = not (os.statvfs(self.data_path).f_flag & os.ST_RDONLY)
        except OSError:
            writable = False
        return {"clients": len(self.sockets), "data": {"path": self.data_path, "write_allowed": writable}}

    async def remount(self, mode):
        command = [part.replace("{mode}", mode) for part in self.remount_cmd]
        process = await asyncio.create_subprocess_exec(*command)
        return await process.wait() == 0

    async def broadcast(self):
        event = {"event_type": "storage", "event": self.state()}
        for ws in list(self.sockets):
            try:
                await ws.send_str(json.dumps(event))
            except ConnectionError:
                pass

    async def handle_state(self, request):
        return web.json_response({"ok": True, "result": self.state()})

    async def handle_ws(self, request):
        ws = web.WebSocketResponse(heartbeat=15)
        await ws.prepare(request)
        await ws.send_str(json.dumps({"event_type": "loop", "event": {}}))
        async with self.lock:
            self.sockets.add(ws)
            if not self.state()["data"]["write_allowed"]:
                await self.remount("rw")
            await self.broadcast()
        try:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                try:
                    event = json.loads(message.data)
                except ValueError:
                    continue
                if event.get("event_type") == "ping":
                    await ws.send_str(json.dumps({"event_type": "pong", "event": {}}))
        finally:
            async with self.lock:
                self.sockets.discard(ws)
                if not self.sockets:
                    await self.remount("ro")
                await self.broadcast()
        return ws


def run_daemon(args):
    daemon = Daemon(args.data_path, args.remount_cmd.split())
    app = web.Application()
    app.router.add_get("/state", daemon.handle_state)
    app.router.add_get("/ws", daemon.handle_ws)
    if os.path.exists(args.socket):
        os.unlink(args.socket)
    web.run_app(app, path=args.socket, print=None, handle_signals=True)


# ---------------------------------------------------------------- pstrun

async def pstrun(args):
    log("INFO", "Opening PST session ...")
    connector = aiohttp.UnixConnector(path=args.socket)
    headers = {"User-Agent": "KVMD-PSTRun/interop"}
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        async with session.ws_connect("http://localhost:0/ws", timeout=timeout) as ws:
            process = None
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                event = json.loads(message.data)
                if event["event_type"] != "storage":
                    continue
                allowed = event["event"]["data"]["write_allowed"]
                if process is None and allowed:
                    path = event["event"]["data"]["path"]
                    log("INFO", f"PST write is allowed: {path}")
                    log("INFO", "Running the process ...")
                    env = dict(os.environ, KVMD_PST_DATA=path)
                    process = await asyncio.create_subprocess_exec(*args.command, env=env, start_new_session=True)
                    waiter = asyncio.ensure_future(process.wait())
                    reader = asyncio.ensure_future(ws.receive())
                    while True:
                        done, _ = await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
                        if waiter in done:
                            reader.cancel()
                            code = waiter.result()
                            log("INFO", f"Process finished: returncode={code}")
                            return code if code >= 0 else 128 - code
                        message = reader.result()
                        revoked = message.type != aiohttp.WSMsgType.TEXT
                        if not revoked:
                            event = json.loads(message.data)
                            revoked = event["event_type"] == "storage" and not event["event"]["data"]["write_allowed"]
                        if revoked:
                            log("ERROR", "PST write was revoked")
                            os.killpg(process.pid, signal.SIGTERM)
                            await asyncio.wait({waiter}, timeout=1)
                            if not waiter.done():
                                os.killpg(process.pid, signal.SIGKILL)
                            await waiter
                            return 1
                        reader = asyncio.ensure_future(ws.receive())
                elif process is None and not allowed:
                    log("ERROR", "PST write is not allowed")
                    return 1
    return 1


def main():
    parser = argparse.ArgumentParser()
    roles = parser.add_subparsers(dest="role", required=True)
    daemon = roles.add_parser("daemon")
    daemon.add_argument("--socket", required=True)
    daemon.add_argument("--data-path", required=True)
    daemon.add_argument("--remount-cmd", required=True)
    run = roles.add_parser("pstrun")
    run.add_argument("--socket", required=True)
    run.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.role == "daemon":
        run_daemon(args)
    else:
        if args.command and args.command[0] == "--":
            args.command = args.command[1:]
        sys.exit(asyncio.run(pstrun(args)))


if __name__ == "__main__":
    main()
