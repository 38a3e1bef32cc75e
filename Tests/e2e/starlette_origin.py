"""A third-party event-stream origin for the end-to-end tests: sse-starlette's EventSourceResponse
under uvicorn (code nobody here wrote), answering POST /v1/chat with tokens and a long pause.

Run as `python3 starlette_origin.py`; prints `origin listening on http://127.0.0.1:PORT` once it
serves. GET /stats answers {"posts": N}.
"""

import asyncio
import json
import socket

import uvicorn
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

posts = 0
TOKENS = ["The", " answer", " is", " forty", "-two", "."]


async def chat(request):
    global posts
    posts += 1
    await request.body()

    async def tokens():
        for n, token in enumerate(TOKENS):
            await asyncio.sleep(2.5 if n == 2 else 0.05)  # the model "thinks"
            yield {"data": json.dumps({"token": token})}
        yield {"data": "[DONE]"}

    return EventSourceResponse(tokens())


async def stats(request):
    return JSONResponse({"posts": posts})


app = Starlette(routes=[Route("/v1/chat", chat, methods=["POST"]), Route("/stats", stats)])

if __name__ == "__main__":
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning")
    server = uvicorn.Server(config)

    async def main():
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        print(f"origin listening on http://127.0.0.1:{port}", flush=True)
        await serving

    asyncio.run(main())
