"""The shared redis-server helper (redis_server.py) that the Redis-mode tests build on."""
import os
import socket

import pytest

from redis_server import REDIS_SERVER, RedisError, RedisServer, redis_server  # noqa: F401


def test_commands_and_reply_types(redis_server):
    assert redis_server.command("SET", "k", "v") == "OK"
    assert redis_server.command("GET", "k") == "v"
    assert redis_server.command("GET", "missing") is None
    assert redis_server.command("INCRBY", "n", 5) == 5
    assert redis_server.command("EVAL", "return {1, 'a'}", 0) == [1, "a"]
    with pytest.raises(RedisError):
        redis_server.command("NOSUCHCOMMAND")


def test_kill_and_restart_on_the_same_port(redis_server):
    port = redis_server.port
    redis_server.command("SET", "k", "v")
    redis_server.kill()
    with pytest.raises(OSError):
        redis_server.command("PING", timeout=1)
    redis_server.start()
    assert redis_server.port == port
    assert redis_server.command("GET", "k") is None  # no persistence


def test_paused_server_answers_nothing(redis_server):
    redis_server.pause()
    with pytest.raises((socket.timeout, OSError)):
        redis_server.command("PING", timeout=0.3)
    redis_server.resume()
    assert redis_server.command("PING") == "PONG"


def test_password():
    if not os.access(REDIS_SERVER, os.X_OK):
        pytest.skip(f"{REDIS_SERVER} is not installed")
    server = RedisServer(password="s3cret")
    try:
        server.start()
        assert server.url == f"redis://:s3cret@127.0.0.1:{server.port}"
        assert server.command("PING") == "PONG"
    finally:
        server.cleanup()
