class _Discovery(BaseHTTPRequestHandler):
    """An OpenID configuration that counts how often it is read; /slow never answers."""

    hits = 0

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/slow"):
            time.sleep(3)  # longer than the provider timeout the test sets: a provider that hangs
            return
        type(self).hits += 1
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        body = json.dumps(
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/authorize",
                "jwks_uri": f"{base}/jwks",
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.parametrize(("cache_seconds", "reads"), [(3600, 1), (0, 3)])
async def test_discovery_is_cached_for_the_setting(cache_seconds, reads):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Discovery)
    issuer = f"http://127.0.0.1:{server.server_address[1]}"
    _Discovery.hits = 0
    settings = settings_from_env(
        {},
        oauth_discovery_cache_seconds=cache_seconds,
        oauth_clients=[OAuthClient(name="idp", client_id="c", issuer=issuer)],
    )
    providers = SignInProviders(settings)
    with serving(server):
        for _ in range(3):
            url = await providers.authorization_url(
                providers.get("idp"),
                redirect_uri="http://x/cb",
                state="s",
                nonce="n",
                verifier="v" * 43,
            )
            assert url.startswith(f"{issuer}/authorize?")
    await providers.aclose()
    assert _Discovery.hits == reads


async def test_a_provider_that_hangs_is_given_up_on_after_the_timeout():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Discovery)
    issuer = f"http://127.0.0.1:{server.server_address[1]}/slow"
    settings = settings_from_env(
        {},
        oauth_timeout_seconds=0.3,
        oauth_clients=[OAuthClient(name="idp", client_id="c", issuer=issuer)],
    )
    providers = SignInProviders(settings)
    with serving(server):
        started = time.monotonic()
        with pytest.raises(UpstreamFailed):
            await providers.authorization_url(
                providers.get("idp"),
                redirect_uri="http://x/cb",
                state="s",
                nonce="n",
                verifier="v" * 43,
            )
        assert time.monotonic() - started < 2
    await providers.aclose()
