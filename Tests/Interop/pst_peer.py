#!/usr/bin/env python3
"""A stand-in for the Python kvmd-pst, for what the real one cannot be made to do.

Written by the swift-pst project from the protocol contract (PROTOCOL.md),
not taken from kvmd, on aiohttp like the reference. Compatibility with the
real kvmd 4.197 is tested against the real thing (`make test-kvmd`,
Documentation/Compatibility.md); this stand-in only plays what that harness
cannot boot: a kvmd 4.8 to 4.35 daemon, which names its event
`storage_state` (`--event-type storage_state`).

    pst_peer.py daemon --socket S --data-path P --remount-cmd 'helper --fstab F {mode}' [--event-type NAME]
"""
import argparse
import asyncio
import json
import os

import aiohttp
from aiohttp import web


# ---------------------------------------------------------------- daemon

class Daemon:
    def __init__(self, data_path, remount_cmd, event_type):
        self.data_path = data_path
        self.remount_cmd = remount_cmd
        self.event_type = event_type
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
        event = {"event_type": self.event_type, "event": self.state()}
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
    daemon = Daemon(args.data_path, args.remount_cmd.split(), args.event_type)
    app = web.Application()
    app.router.add_get("/state", daemon.handle_state)
    app.router.add_get("/ws", daemon.handle_ws)
    if os.path.exists(args.socket):
        os.unlink(args.socket)
    web.run_app(app, path=args.socket, print=None, handle_signals=True)


def main():
    parser = argparse.ArgumentParser()
    roles = parser.add_subparsers(dest="role", required=True)
    daemon = roles.add_parser("daemon")
    daemon.add_argument("--socket", required=True)
    daemon.add_argument("--data-path", required=True)
    daemon.add_argument("--remount-cmd", required=True)
    daemon.add_argument("--event-type", default="storage", choices=["storage", "storage_state"])
    args = parser.parse_args()
    run_daemon(args)


if __name__ == "__main__":
    main()
