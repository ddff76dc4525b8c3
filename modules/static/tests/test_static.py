"""The static module: root, alias, index, try_files and file serving, against the real binary."""
import email.utils
import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import time

import pytest

from harness import SOURCE, raw_request, server_block, split_responses


# ---- helpers ---------------------------------------------------------------------------------


def make_files(t, files, base="www"):
    """Creates `files` ({relative path: bytes or str}) under t.prefix/base, readable by nobody.

    A key ending in '/' makes an (empty) directory. Returns the absolute base directory."""
    root = t.path(base)
    os.makedirs(root, exist_ok=True)
    os.chmod(root, 0o755)
    for rel, content in files.items():
        full = os.path.join(root, rel)
        parent = os.path.dirname(full.rstrip("/"))
        os.makedirs(parent, exist_ok=True)
        d = parent
        while len(d) > len(root):
            os.chmod(d, 0o755)
            d = os.path.dirname(d)
        if rel.endswith("/"):
            os.makedirs(full, exist_ok=True)
            os.chmod(full, 0o755)
            continue
        with open(full, "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)
        os.chmod(full, 0o644)
    return root


def start(tollgate_factory, body, files=None, base="www", http_extra=""):
    """A server on 127.0.0.1:{port} with `body`, over files created under {prefix}/base."""
    block = "http {\n    include mime.types;\n%s\n    server {\n        listen 127.0.0.1:{port};\n%s\n    }\n}\n" % (
        http_extra,
        body,
    )
    t = tollgate_factory(block)
    make_files(t, files or {}, base)
    return t.start()


def request(t, method, path, headers=None, body=None):
    """One request on a fresh connection: (status, headers dict lower-case, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def get(t, path, headers=None):
    return request(t, "GET", path, headers)


def curl(*args):
    r = subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def assert_error_json(body, status, code):
    doc = json.loads(body)
    assert doc["error"] == code
    assert doc["status"] == status
    assert isinstance(doc["message"], str) and doc["message"]
    assert len(doc["request_id"]) == 32


def http_date(ts):
    return email.utils.formatdate(ts, usegmt=True)


ROOT = "        root {prefix}/www;\n"


# ---- serving files ---------------------------------------------------------------------------


def test_root_file_content_type_and_length(tollgate_factory):
    t = start(tollgate_factory, ROOT, {"a.html": "<p>hello</p>", "s/style.css": "b{}", "x.json": "{}"})
    status, headers, body = get(t, "/a.html")
    assert status == 200
    assert body == b"<p>hello</p>"
    assert headers["content-type"] == "text/html"
    assert headers["content-length"] == str(len(body))
    assert headers["accept-ranges"] == "bytes"
    mtime = int(os.stat(t.path("www/a.html")).st_mtime)
    assert headers["last-modified"] == http_date(mtime)
    assert headers["etag"] == '"%x-%x"' % (mtime, len(body))
    assert get(t, "/s/style.css")[1]["content-type"] == "text/css"
    assert get(t, "/x.json")[1]["content-type"] == "application/json"


def test_unknown_extension_uses_default_type(tollgate_factory):
    t = start(tollgate_factory, ROOT + "        default_type application/octet-stream;\n",
              {"blob.zzz": "x", "noext": "y"})
    assert get(t, "/blob.zzz")[1]["content-type"] == "application/octet-stream"
    assert get(t, "/noext")[1]["content-type"] == "application/octet-stream"


def test_curl_download(tollgate_factory):
    t = start(tollgate_factory, ROOT, {"hello.txt": "hello from disk\n"})
    out = curl("-D", "-", t.url("/hello.txt"))
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"Content-Type: text/plain" in head
    assert body == b"hello from disk\n"


def test_empty_file(tollgate_factory):
    t = start(tollgate_factory, ROOT, {"empty.txt": ""})
    status, headers, body = get(t, "/empty.txt")
    assert status == 200
    assert headers["content-length"] == "0"
    assert body == b""


def test_head_has_headers_and_no_body(tollgate_factory):
    t = start(tollgate_factory, ROOT, {"a.txt": "0123456789"})
    data = raw_request(t.port, b"HEAD /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"\r\nContent-Length: 10" in head
    assert b"\r\nContent-Type: text/plain" in head
    assert b"\r\nETag: " in head
    assert rest == b""
    out = curl("-I", t.url("/a.txt"))
    assert b"Content-Length: 10" in out


def test_default_root_is_html_under_prefix(tollgate_factory):
    t = start(tollgate_factory, "", {"index.html": "default root"}, base="html")
    status, _, body = get(t, "/")
    assert (status, body) == (200, b"default root")
    assert get(t, "/index.html")[2] == b"default root"


def test_root_inherited_and_overridden(tollgate_factory):
    t = tollgate_factory(
        "http {\n root {prefix}/www;\n server {\n listen 127.0.0.1:{port};\n"
        " location /other/ { root {prefix}/alt; }\n }\n}\n"
    )
    make_files(t, {"a.txt": "from www"})
    make_files(t, {"other/b.txt": "from alt"}, base="alt")
    t.start()
    assert get(t, "/a.txt")[2] == b"from www"
    assert get(t, "/other/b.txt")[2] == b"from alt"
    assert get(t, "/other/a.txt")[0] == 404


def test_root_with_variables(tollgate_factory):
    t = start(tollgate_factory, "        root {prefix}/sites/$http_x_site;\n",
              {"one/f.txt": "site one", "two/f.txt": "site two"}, base="sites")
    assert get(t, "/f.txt", {"X-Site": "one"})[2] == b"site one"
    assert get(t, "/f.txt", {"X-Site": "two"})[2] == b"site two"
    # a variable root never climbs out with ".."
    with open(t.path("f.txt"), "w") as f:
        f.write("outside")
    os.chmod(t.path("f.txt"), 0o644)
    assert get(t, "/f.txt", {"X-Site": ".."})[0] == 404
    assert get(t, "/f.txt", {"X-Site": "one/../.."})[0] == 404


def test_document_root_and_request_filename_variables(tollgate_factory):
    t = start(
        tollgate_factory,
        ROOT + '        location /v/ { return 200 "$document_root|$request_filename"; }\n'
        '        location = /a/x { alias {prefix}/pics/x.png; return 200 "$document_root|$request_filename"; }\n',
    )
    assert get(t, "/v/file.txt")[2] == ("%s/www|%s/www/v/file.txt" % (t.prefix, t.prefix)).encode()
    assert get(t, "/a/x")[2] == ("%s/pics/x.png|%s/pics/x.png" % (t.prefix, t.prefix)).encode()


def test_symlinks_are_followed(tollgate_factory):
    t = start(tollgate_factory, ROOT, {"real.txt": "real content"})
    os.symlink(t.path("www/real.txt"), t.path("www/link.txt"))
    status, _, body = get(t, "/link.txt")
    assert (status, body) == (200, b"real content")


def test_percent_encoded_name(tollgate_factory):
    t = start(tollgate_factory, ROOT, {"with space.txt": "spaced", "d ir/": None})
    assert get(t, "/with%20space.txt")[2] == b"spaced"
    status, headers, _ = get(t, "/d%20ir")
    assert status == 301
    assert headers["location"] == "http://127.0.0.1:%d/d%%20ir/" % t.port


# ---- index and directories -------------------------------------------------------------------


def test_index(tollgate_factory):
    t = start(tollgate_factory, ROOT, {"index.html": "top", "sub/index.html": "<b>sub</b>"})
    status, headers, body = get(t, "/")
    assert (status, body) == (200, b"top")
    assert headers["content-type"] == "text/html"
    assert get(t, "/sub/")[2] == b"<b>sub</b>"


def test_index_list_order_and_inheritance(tollgate_factory):
    t = start(
        tollgate_factory,
        ROOT + "        index missing.html home.htm index.html;\n"
        "        location /docs/ { index /docs/README.txt; }\n",
        {"index.html": "index", "home.htm": "home", "a/index.html": "a-index", "docs/README.txt": "readme"},
    )
    assert get(t, "/")[2] == b"home"
    assert get(t, "/a/")[2] == b"a-index"
    assert get(t, "/docs/")[2] == b"readme"  # an absolute index is used as is


def test_index_redirect_keeps_query_and_reruns_locations(tollgate_factory):
    t = start(
        tollgate_factory,
        ROOT + '        location = /index.html { return 200 "matched $uri?$args"; }\n',
        {"index.html": "file"},
    )
    assert get(t, "/?a=1")[2] == b"matched /index.html?a=1"


def test_directory_redirect_301(tollgate_factory):
    t = start(tollgate_factory, ROOT, {"dir/index.html": "in dir"})
    status, headers, _ = get(t, "/dir")
    assert status == 301
    assert headers["location"] == "http://127.0.0.1:%d/dir/" % t.port
    status, headers, _ = get(t, "/dir?x=1&y=2")
    assert status == 301
    assert headers["location"] == "http://127.0.0.1:%d/dir/?x=1&y=2" % t.port
    status, headers, _ = request(t, "GET", "/dir", {"Host": "example.com"})
    assert headers["location"] == "http://example.com/dir/"
    # curl follows it to the index
    assert curl("-L", t.url("/dir")) == b"in dir"


def test_directory_redirect_without_host_uses_server_address(tollgate_factory):
    t = start(tollgate_factory, ROOT, {"d/": None})
    data = raw_request(t.port, b"GET /d?q=1 HTTP/1.0\r\n\r\n")
    (status, headers, _), = split_responses(data)
    assert status == 301
    assert headers["location"] == "http://127.0.0.1:%d/d/?q=1" % t.port


def test_directory_without_index_is_403(tollgate_factory):
    t = start(tollgate_factory, ROOT, {"empty/": None})
    status, _, body = get(t, "/empty/")
    assert status == 403
    assert_error_json(body, 403, "forbidden")
    assert "directory index of" in t.error_log()


def test_missing_directory_with_slash_is_404(tollgate_factory):
    t = start(tollgate_factory, ROOT, {})
    status, _, body = get(t, "/nope/")
    assert status == 404
    assert_error_json(body, 404, "not_found")


def test_file_with_trailing_slash_is_404(tollgate_factory):
    t = start(tollgate_factory, ROOT, {"f.txt": "x"})
    assert get(t, "/f.txt/")[0] == 404


# ---- errors ----------------------------------------------------------------------------------


def test_404_json_body(tollgate_factory):
    t = start(tollgate_factory, ROOT, {})
    status, headers, body = get(t, "/does-not-exist.txt")
    assert status == 404
    assert headers["content-type"] == "application/json"
    assert_error_json(body, 404, "not_found")
    assert "etag" not in headers and "last-modified" not in headers
    assert 'open() "%s/www/does-not-exist.txt" failed (2: No such file or directory)' % t.prefix in t.error_log()


def test_403_unreadable_file(tollgate_factory):
    t = start(tollgate_factory, ROOT, {"secret.txt": "top secret"})
    os.chmod(t.path("www/secret.txt"), 0)
    status, _, body = get(t, "/secret.txt")
    assert status == 403
    assert_error_json(body, 403, "forbidden")
    assert b"secret" not in body
    assert "Permission denied" in t.error_log()


def test_403_unsearchable_directory(tollgate_factory):
    t = start(tollgate_factory, ROOT, {"locked/f.txt": "x"})
    os.chmod(t.path("www/locked"), 0o700)
    assert get(t, "/locked/f.txt")[0] == 403


def test_405_for_post_put_delete(tollgate_factory):
    t = start(tollgate_factory, ROOT, {"a.txt": "x"})
    for method in ("POST", "PUT", "DELETE"):
        status, headers, body = request(t, method, "/a.txt", body=b"data")
        assert status == 405, method
        assert headers["allow"] == "GET, HEAD"
        assert_error_json(body, 405, "method_not_allowed")
    # POST to a missing file is a 404, as nginx
    assert request(t, "POST", "/missing.txt", body=b"")[0] == 404
    out = curl("-i", "-X", "OPTIONS", t.url("/a.txt"))
    assert out.startswith(b"HTTP/1.1 405") and b"Allow: GET, HEAD" in out


def test_nul_and_traversal_never_served(tollgate_factory):
    t = start(tollgate_factory, ROOT, {"a.txt": "x"})
    with open(t.path("outside.txt"), "w") as f:
        f.write("outside")
    os.chmod(t.path("outside.txt"), 0o644)
    for target in (b"/a.txt%00.html", b"/../outside.txt", b"/%2e%2e/outside.txt", b"/x/..%2f..%2foutside.txt"):
        data = raw_request(t.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert b"outside" not in data.partition(b"\r\n\r\n")[2], target
        assert not data.startswith(b"HTTP/1.1 200"), target


def test_alias_prefix_traversal_is_refused(tollgate_factory):
    # The classic nginx alias pitfall: "location /img" + "alias .../pics/" maps /img../x to pics/../x.
    t = start(tollgate_factory, ROOT + "        location /img { alias {prefix}/pics/; }\n",
              {"p.txt": "pic"}, base="pics")
    with open(t.path("secret.txt"), "w") as f:
        f.write("secret")
    os.chmod(t.path("secret.txt"), 0o644)
    assert get(t, "/img/p.txt")[2] == b"pic"
    status, _, body = get(t, "/img../secret.txt")
    assert status == 404
    assert b"secret" != body


# ---- alias -----------------------------------------------------------------------------------


def test_alias_with_prefix_location(tollgate_factory):
    t = start(
        tollgate_factory,
        ROOT + "        location /static/ { alias {prefix}/assets/; }\n"
        "        location = /favicon.ico { alias {prefix}/assets/icon.ico; }\n",
        {"app.js": "js!", "sub/index.html": "alias index", "icon.ico": "ICO"},
        base="assets",
    )
    status, headers, body = get(t, "/static/app.js")
    assert (status, body) == (200, b"js!")
    assert headers["content-type"] == "application/javascript"
    assert get(t, "/static/sub/")[2] == b"alias index"
    status, headers, _ = get(t, "/static/sub")
    assert status == 301 and headers["location"].endswith("/static/sub/")
    assert get(t, "/favicon.ico")[2] == b"ICO"
    assert get(t, "/static/nope.js")[0] == 404


# ---- try_files -------------------------------------------------------------------------------


def test_try_files_file_dir_and_fallback_uri(tollgate_factory):
    t = start(
        tollgate_factory,
        ROOT + "        location / { try_files $uri $uri/ /fallback.html?from=$uri; }\n"
        '        location = /fallback.html { return 200 "fallback $args"; }\n',
        {"exists.txt": "exists", "dir/index.html": "dir index", "empty/": None},
    )
    assert get(t, "/exists.txt")[2] == b"exists"
    assert get(t, "/dir/")[2] == b"dir index"
    # "$uri/" finds the directory for /dir: it is served as a directory, i.e. 301 to /dir/
    status, headers, _ = get(t, "/dir")
    assert status == 301 and headers["location"].endswith("/dir/")
    assert get(t, "/missing")[2] == b"fallback from=/missing"


def test_try_files_serves_other_file_with_its_type(tollgate_factory):
    t = start(tollgate_factory, ROOT + "        location / { try_files $uri /app.html; }\n"
              "        location = /app.html { }\n",
              {"app.html": "<main>spa</main>", "real.css": "x{}"})
    status, headers, body = get(t, "/some/client/route")
    assert (status, body) == (200, b"<main>spa</main>")
    assert headers["content-type"] == "text/html"
    assert get(t, "/real.css")[1]["content-type"] == "text/css"


def test_try_files_first_existing_wins(tollgate_factory):
    t = start(tollgate_factory, ROOT + "        location / { try_files /a.txt /b.txt =404; }\n",
              {"b.txt": "b wins"})
    assert get(t, "/anything")[2] == b"b wins"


def test_try_files_code(tollgate_factory):
    t = start(tollgate_factory, ROOT + "        location / { try_files $uri =404; }\n"
              "        location /gone/ { try_files $uri =410; }\n", {"dir/": None, "a.txt": "a"})
    status, _, body = get(t, "/nope")
    assert status == 404
    assert_error_json(body, 404, "not_found")
    assert get(t, "/dir")[0] == 404  # a directory does not match a plain name
    assert get(t, "/a.txt")[2] == b"a"
    assert get(t, "/gone/x")[0] == 410


def test_try_files_named_location(tollgate_factory):
    t = start(
        tollgate_factory,
        ROOT + "        location / { try_files $uri @backend; }\n"
        '        location @backend { return 200 "named fallback"; }\n',
        {"real.txt": "real"},
    )
    assert get(t, "/real.txt")[2] == b"real"
    status, _, body = get(t, "/virtual/path")
    assert (status, body) == (200, b"named fallback")


def test_try_files_named_location_keeps_uri_and_serves_files(tollgate_factory):
    # nginx: a named location keeps $uri and $args, so it can serve the file from another root.
    t = start(
        tollgate_factory,
        ROOT + "        location /s/ { try_files $uri @alt; }\n"
        "        location @alt { root {prefix}/alt; }\n"
        "        location /e/ { try_files $uri @echo; }\n"
        '        location @echo { return 200 "uri=$uri args=$args"; }\n',
        {"s/f.txt": "from alt"},
        base="alt",
    )
    make_files(t, {"s/here.txt": "from www"})
    assert get(t, "/s/here.txt")[2] == b"from www"
    assert get(t, "/s/f.txt")[2] == b"from alt"
    assert get(t, "/e/x?a=1")[2] == b"uri=/e/x args=a=1"


def test_try_files_with_alias(tollgate_factory):
    t = start(
        tollgate_factory,
        ROOT + "        location /docs/ { alias {prefix}/manual/; try_files $uri $uri.html =404; }\n",
        {"intro.html": "intro page"},
        base="manual",
    )
    assert get(t, "/docs/intro.html")[2] == b"intro page"
    status, headers, body = get(t, "/docs/intro")
    assert (status, body) == (200, b"intro page")
    assert headers["content-type"] == "text/html"
    assert get(t, "/docs/other")[0] == 404


def test_try_files_at_server_level_is_not_inherited(tollgate_factory):
    # As nginx: a server-level try_files is used only when no location matches.
    t = start(tollgate_factory, ROOT + "        try_files $uri /fallback.txt;\n"
              "        location /loc/ { }\n", {"fallback.txt": "fb"})
    assert get(t, "/nothing")[2] == b"fb"
    assert get(t, "/loc/nothing")[0] == 404


# ---- error_page ------------------------------------------------------------------------------


def test_error_page_404_custom_page(tollgate_factory):
    t = start(tollgate_factory, ROOT + "        error_page 404 /404.html;\n",
              {"404.html": "<h1>custom not found</h1>"})
    status, headers, body = get(t, "/missing")
    assert status == 404
    assert body == b"<h1>custom not found</h1>"
    assert headers["content-type"] == "text/html"
    assert "etag" not in headers and "last-modified" not in headers
    # a conditional request for a missing page still gets the 404 page
    status, _, body = get(t, "/missing", {"If-None-Match": "*"})
    assert (status, body) == (404, b"<h1>custom not found</h1>")
    # HEAD gets the status without a body
    status, _, body = request(t, "HEAD", "/missing")
    assert (status, body) == (404, b"")
    # curl agrees
    out = curl("-i", t.url("/missing"))
    assert out.startswith(b"HTTP/1.1 404") and out.endswith(b"<h1>custom not found</h1>")


def test_error_page_override_200(tollgate_factory):
    t = start(tollgate_factory, ROOT + "        error_page 404 =200 /x.json;\n",
              {"x.json": '{"fallback":true}'})
    status, headers, body = get(t, "/missing")
    assert status == 200
    assert body == b'{"fallback":true}'
    assert headers["content-type"] == "application/json"


def test_error_page_for_403_and_405(tollgate_factory):
    t = start(tollgate_factory, ROOT + "        error_page 403 405 /err.txt;\n",
              {"err.txt": "custom error", "closed/": None, "a.txt": "a"})
    status, _, body = get(t, "/closed/")
    assert (status, body) == (403, b"custom error")
    status, _, body = request(t, "POST", "/a.txt", body=b"x")
    assert (status, body) == (405, b"custom error")


def test_error_page_missing_page_gives_json(tollgate_factory):
    t = start(tollgate_factory, ROOT + "        error_page 404 /nope.html;\n", {})
    status, _, body = get(t, "/missing")
    assert status == 404
    assert_error_json(body, 404, "not_found")


# ---- conditional requests and ranges -----------------------------------------------------------


def test_if_modified_since_304(tollgate_factory):
    t = start(tollgate_factory, ROOT, {"c.txt": "cached"})
    os.utime(t.path("www/c.txt"), (1700000000, 1700000000))
    status, headers, _ = get(t, "/c.txt")
    lm = headers["last-modified"]
    assert lm == "Tue, 14 Nov 2023 22:13:20 GMT"
    status, headers, body = get(t, "/c.txt", {"If-Modified-Since": lm})
    assert status == 304
    assert body == b""
    assert headers["etag"] == '"6553f100-6"'
    assert headers["last-modified"] == lm
    assert "content-length" not in headers
    # exact match only (nginx's if_modified_since exact)
    assert get(t, "/c.txt", {"If-Modified-Since": "Tue, 14 Nov 2023 22:13:21 GMT"})[0] == 200
    assert get(t, "/c.txt", {"If-Modified-Since": "garbage"})[0] == 200
    # RFC 850 and asctime forms
    assert get(t, "/c.txt", {"If-Modified-Since": "Tuesday, 14-Nov-23 22:13:20 GMT"})[0] == 304
    assert get(t, "/c.txt", {"If-Modified-Since": "Tue Nov 14 22:13:20 2023"})[0] == 304
    # curl -z sends If-Modified-Since
    out = curl("-i", "-z", lm, t.url("/c.txt"))
    assert out.startswith(b"HTTP/1.1 304")


def test_if_none_match_304(tollgate_factory):
    t = start(tollgate_factory, ROOT, {"e.txt": "etagged"})
    etag = get(t, "/e.txt")[1]["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    assert get(t, "/e.txt", {"If-None-Match": etag})[0] == 304
    assert get(t, "/e.txt", {"If-None-Match": '"other", ' + etag})[0] == 304
    assert get(t, "/e.txt", {"If-None-Match": "W/" + etag})[0] == 304
    assert get(t, "/e.txt", {"If-None-Match": "*"})[0] == 304
    assert get(t, "/e.txt", {"If-None-Match": '"nope"'})[0] == 200
    # both present: both must say "not modified"
    lm = get(t, "/e.txt")[1]["last-modified"]
    assert get(t, "/e.txt", {"If-None-Match": etag, "If-Modified-Since": lm})[0] == 304
    assert get(t, "/e.txt", {"If-None-Match": '"nope"', "If-Modified-Since": lm})[0] == 200
    # HEAD too
    assert request(t, "HEAD", "/e.txt", {"If-None-Match": etag})[0] == 304


def test_if_match_and_if_unmodified_since_412(tollgate_factory):
    t = start(tollgate_factory, ROOT, {"p.txt": "precond"})
    status, headers, _ = get(t, "/p.txt")
    etag, lm = headers["etag"], headers["last-modified"]
    assert get(t, "/p.txt", {"If-Match": etag})[0] == 200
    assert get(t, "/p.txt", {"If-Match": '"other"'})[0] == 412
    assert get(t, "/p.txt", {"If-Unmodified-Since": lm})[0] == 200
    assert get(t, "/p.txt", {"If-Unmodified-Since": "Thu, 01 Jan 1998 00:00:00 GMT"})[0] == 412


def test_small_files_are_read_inline_and_large_ones_sent_whole(tollgate_factory):
    # Up to 32 KiB the worker reads the file behind the head; above, sendfile. Both must be
    # byte-exact, also for ranges on either side of the threshold and on one connection.
    sizes = {"a.bin": 32 * 1024, "b.bin": 32 * 1024 + 1, "c.bin": 1, "d.bin": 3 * 1024 * 1024 + 7}
    files = {name: os.urandom(n) for name, n in sizes.items()}
    t = start(tollgate_factory, ROOT, files)
    conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)
    for name, content in files.items():
        conn.request("GET", "/" + name)
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.read() == content
        conn.request("GET", "/" + name, headers={"Range": "bytes=0-0"})
        resp = conn.getresponse()
        assert resp.status == 206 and resp.read() == content[:1]
    big = files["d.bin"]
    conn.request("GET", "/d.bin", headers={"Range": "bytes=40000-40999"})
    resp = conn.getresponse()
    assert resp.status == 206 and resp.read() == big[40000:41000]
    conn.close()


def test_range_requests(tollgate_factory):
    content = bytes(range(256)) * 4  # 1024 bytes
    t = start(tollgate_factory, ROOT, {"r.bin": content})
    status, headers, body = get(t, "/r.bin", {"Range": "bytes=10-19"})
    assert status == 206
    assert body == content[10:20]
    assert headers["content-range"] == "bytes 10-19/1024"
    assert headers["content-length"] == "10"
    status, headers, body = get(t, "/r.bin", {"Range": "bytes=1000-"})
    assert (status, body) == (206, content[1000:])
    status, headers, body = get(t, "/r.bin", {"Range": "bytes=-24"})
    assert (status, body, headers["content-range"]) == (206, content[-24:], "bytes 1000-1023/1024")
    status, headers, body = get(t, "/r.bin", {"Range": "bytes=1000-5000"})
    assert (status, body) == (206, content[1000:])
    status, headers, _ = get(t, "/r.bin", {"Range": "bytes=2000-3000"})
    assert status == 416
    assert headers["content-range"] == "bytes */1024"
    # several ranges: the whole file (legal)
    status, _, body = get(t, "/r.bin", {"Range": "bytes=0-1,5-6"})
    assert (status, body) == (200, content)
    # not bytes: ignored
    assert get(t, "/r.bin", {"Range": "items=0-1"})[0] == 200
    # If-Range with a stale validator: the whole file
    assert get(t, "/r.bin", {"Range": "bytes=0-1", "If-Range": '"stale"'})[0] == 200
    etag = get(t, "/r.bin")[1]["etag"]
    assert get(t, "/r.bin", {"Range": "bytes=0-1", "If-Range": etag})[0] == 206
    assert curl("-r", "4-7", t.url("/r.bin")) == content[4:8]


# ---- transfer --------------------------------------------------------------------------------


def test_large_file_sendfile(tollgate_factory):
    t = start(tollgate_factory, ROOT, {})
    path = t.path("www/big.bin")
    size = 50 * 1024 * 1024
    with open(path, "wb") as f:
        f.write(b"HEAD-MARKER")
        f.seek(size // 2)
        f.write(os.urandom(4096))
        f.truncate(size)
        f.seek(size - 10)
        f.write(b"TAIL-MARK!")
    os.chmod(path, 0o644)
    with open(path, "rb") as f:
        expected = hashlib.sha256(f.read()).hexdigest()
    conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=60)
    conn.request("GET", "/big.bin")
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("Content-Length") == str(size)
    h = hashlib.sha256()
    total = 0
    while True:
        chunk = resp.read(1 << 20)
        if not chunk:
            break
        h.update(chunk)
        total += len(chunk)
    conn.close()
    assert total == size
    assert h.hexdigest() == expected
    # and with curl
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", t.url("/big.bin")],
                         capture_output=True, text=True, timeout=120)
    assert out.stdout == "200 %d" % size


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_file_body_goes_out_with_sendfile(tollgate_factory):
    """The worker hands File bodies to the kernel with sendfile(2), not mmap + writev."""
    t = start(tollgate_factory, ROOT, {})
    path = t.path("www/s.bin")
    with open(path, "wb") as f:
        f.truncate(4 * 1024 * 1024)
    os.chmod(path, 0o644)
    worker = t.wait_workers(1)[0]
    trace = t.path("strace.out")
    st = subprocess.Popen(["strace", "-qq", "-p", str(worker), "-e", "trace=sendfile,mmap,writev", "-o", trace],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not os.path.exists(trace):
            time.sleep(0.05)
        time.sleep(0.3)
        if st.poll() is not None:
            pytest.skip("cannot ptrace the worker: " + st.stderr.read().decode())
        out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}", t.url("/s.bin")],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout == str(4 * 1024 * 1024)
        time.sleep(0.3)
    finally:
        st.terminate()
        st.wait()
        st.stderr.close()
    with open(trace) as f:
        calls = f.read()
    assert "sendfile(" in calls, "no sendfile() in the worker:\n" + calls[-2000:]


def test_keepalive_two_requests_one_connection(tollgate_factory):
    t = start(tollgate_factory, ROOT, {"one.txt": "first", "two.txt": "second!"})
    conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)
    conn.request("GET", "/one.txt")
    r1 = conn.getresponse()
    assert r1.read() == b"first"
    sock = conn.sock
    conn.request("GET", "/two.txt")
    r2 = conn.getresponse()
    assert r2.read() == b"second!"
    assert conn.sock is sock  # the same connection
    conn.close()
    # pipelined, including a 404 and a HEAD in between
    data = raw_request(
        t.port,
        b"GET /one.txt HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /two.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    responses = split_responses(data)
    assert [r[0] for r in responses] == [200, 404, 200]
    assert responses[0][2] == b"first" and responses[2][2] == b"second!"


def test_file_changed_between_requests(tollgate_factory):
    t = start(tollgate_factory, ROOT, {"v.txt": "version one"})
    assert get(t, "/v.txt")[2] == b"version one"
    with open(t.path("www/v.txt"), "w") as f:
        f.write("v2")
    assert get(t, "/v.txt")[2] == b"v2"


# ---- the demo site ---------------------------------------------------------------------------


def test_demo_site_pages(tollgate_factory):
    html_dir = os.path.join(SOURCE, "html")
    t = tollgate_factory(server_block(
        "root %s;\n index index.html;\n error_page 404 /404.html;\n"
        ' location = /health { return 200 "ok"; }\n' % html_dir))
    t.start()
    status, headers, body = get(t, "/")
    assert status == 200 and headers["content-type"] == "text/html"
    text = body.decode()
    assert "tollgate" in text.lower()
    assert 'href="/health"' in text and 'href="/whoami"' in text
    assert "http://" not in text and "https://" not in text  # self-contained
    status, headers, body = get(t, "/no/such/page")
    assert status == 404 and headers["content-type"] == "text/html"
    assert b"404" in body and b"https://" not in body


# ---- configuration errors --------------------------------------------------------------------


def config_error(tollgate_factory, body):
    t = tollgate_factory(server_block(body))
    code, err = t.test_config()
    assert code != 0
    return err


def test_config_alias_outside_location(tollgate_factory):
    err = config_error(tollgate_factory, "alias /tmp/;")
    assert '"alias" directive is not allowed here' in err


def test_config_root_and_alias(tollgate_factory):
    err = config_error(tollgate_factory, "location /a/ { root /tmp; alias /tmp/; }")
    assert '"alias" directive is duplicate, "root" directive was specified earlier' in err
    err = config_error(tollgate_factory, "location /a/ { alias /tmp/; root /tmp; }")
    assert '"root" directive is duplicate, "alias" directive was specified earlier' in err
    err = config_error(tollgate_factory, "location /a/ { root /tmp; root /var; }")
    assert '"root" directive is duplicate' in err


def test_config_try_files_one_argument(tollgate_factory):
    err = config_error(tollgate_factory, "location / { try_files $uri; }")
    assert 'invalid number of arguments in "try_files" directive' in err


def test_config_other_errors(tollgate_factory):
    assert "named location" in config_error(tollgate_factory, "location @x { alias /tmp/; }")
    assert "regex" in config_error(tollgate_factory, "location ~ \\.png$ { alias /tmp/; }")
    assert 'invalid code "=abc"' in config_error(tollgate_factory, "location / { try_files $uri =abc; }")
    assert "duplicate" in config_error(tollgate_factory, "location / { try_files $uri =404; try_files $uri =403; }")
    assert "only the last index" in config_error(tollgate_factory, "index /a.html b.html;")
    assert "unknown \"nosuchvar\" variable" in config_error(tollgate_factory, "root /srv/$nosuchvar;")
    assert "cannot be used" in config_error(tollgate_factory, "root $document_root/x;")


def test_config_try_files_not_in_http(tollgate_factory):
    t = tollgate_factory("http { try_files $uri =404; server { listen 127.0.0.1:{port}; } }")
    code, err = t.test_config()
    assert code != 0 and '"try_files" directive is not allowed here' in err


def test_config_valid(tollgate_factory):
    t = tollgate_factory(server_block(
        "root html/;\n index index.html index.htm;\n"
        " location /a/ { alias /tmp/; try_files $uri $uri/ =404; }\n"
        " location / { try_files $uri $uri/ /index.html?$args; }\n"
        " location @n { root /srv; }\n"))
    code, err = t.test_config()
    assert code == 0, err
