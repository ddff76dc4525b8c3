"""proxy_request_buffering: tollgate streams request bodies; "on" is refused with a reason."""
from harness import server_block


def test_request_buffering_off_is_accepted(tollgate_factory):
    t = tollgate_factory(server_block(
        "location / { proxy_request_buffering off; proxy_pass http://127.0.0.1:9; }"))
    rc, err = t.test_config()
    assert rc == 0, err


def test_request_buffering_on_is_refused_with_file_and_line(tollgate_factory):
    t = tollgate_factory(server_block(
        "location / { proxy_request_buffering on; proxy_pass http://127.0.0.1:9; }"))
    rc, err = t.test_config()
    assert rc == 1
    assert ('tollgate.conf:11: "proxy_request_buffering on" is not supported: tollgate streams '
            'request bodies (use "off")') in err
