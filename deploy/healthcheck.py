"""The container's health check (deploy/Dockerfile's HEALTHCHECK): GET /healthz on this container.

/healthz answers 200 when the app and its database answer. The request names a host the app
serves (the first of ALLOWED_HOSTS) and says it came over HTTPS, as the TLS proxy in front does,
so that neither the host check nor SECURE_SSL_REDIRECT turns it away. Exit 0: healthy.
"""

import http.client
import os
import sys


def main() -> int:
    hosts = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "").split(",") if h.strip()]
    host = next((h.lstrip(".") for h in hosts if h != "*"), "localhost")
    port = int(os.environ.get("PORT") or 8000)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/healthz", headers={"Host": host, "X-Forwarded-Proto": "https"})
        status = connection.getresponse().status
    except OSError as error:
        print(f"healthcheck: {error}", file=sys.stderr)
        return 1
    finally:
        connection.close()
    if status != 200:
        print(f"healthcheck: /healthz answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
