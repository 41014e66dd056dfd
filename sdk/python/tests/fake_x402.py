"""A local x402 resource server and a fake facilitator, written to the x402 spec (v1 body and
X-PAYMENT headers, v2 PAYMENT-* headers; exact and upto). 127.0.0.1 only.

Routes of the resource server:
  /v1/exact      v1: 402 JSON body, accepts[] with maxAmountRequired 10000 (0.01 USDC)
  /v2/exact      v2: PAYMENT-REQUIRED header (standard base64), amount 25000 (0.025 USDC)
  /v2/exact-url  v2, the header in url-safe base64 without padding, amount 7 (0.000007)
  /v2/upto       v2 upto: authorise up to 50000, the facilitator settles 12345
A payload whose payload.signature is "bad" fails verification: the server answers 402 again.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional

import httpx

USDC_BASE_SEPOLIA = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
UPTO_SETTLED = "12345"


def b64(document: Any, urlsafe: bool = False) -> str:
    raw = json.dumps(document).encode()
    if urlsafe:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return base64.b64encode(raw).decode()


def unb64(text: str) -> Any:
    text = text.replace("-", "+").replace("_", "/")
    return json.loads(base64.b64decode(text + "=" * (-len(text) % 4)))


class _Server:
    def __init__(self, handler: type) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class FakeFacilitator(_Server):
    def __init__(self) -> None:
        self.verified: List[Dict[str, Any]] = []
        self.settled: List[Dict[str, Any]] = []
        facilitator = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                payload, requirements = body["paymentPayload"], body["paymentRequirements"]
                valid = payload.get("payload", {}).get("signature") != "bad"
                if self.path == "/verify":
                    facilitator.verified.append(body)
                    answer: Dict[str, Any] = {"isValid": valid, "payer": "0xpayer"}
                    if not valid:
                        answer["invalidReason"] = "invalid_exact_evm_payload_signature"
                else:
                    facilitator.settled.append(body)
                    answer = {"success": valid, "transaction": "0x" + "ab" * 32, "payer": "0xpayer",
                              "network": requirements["network"]}
                    if body["x402Version"] == 2:
                        answer["amount"] = (UPTO_SETTLED if requirements["scheme"] == "upto"
                                            else requirements["amount"])
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler)


class ResourceServer(_Server):
    def __init__(self, facilitator: FakeFacilitator) -> None:
        self.served: List[str] = []
        resource = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = resource.url + self.path
                version = 1 if self.path.startswith("/v1/") else 2
                if version == 1:
                    requirements: Dict[str, Any] = {
                        "scheme": "exact", "network": "base-sepolia", "maxAmountRequired": "10000",
                        "asset": USDC_BASE_SEPOLIA, "payTo": "0x" + "11" * 20, "resource": url,
                        "description": "market data", "mimeType": "application/json",
                        "maxTimeoutSeconds": 60, "extra": {"name": "USDC", "version": "2"}}
                else:
                    amount = {"/v2/exact": "25000", "/v2/exact-url": "7", "/v2/upto": "50000"}[self.path]
                    requirements = {
                        "scheme": "upto" if self.path == "/v2/upto" else "exact",
                        "network": "eip155:84532", "amount": amount, "asset": USDC_BASE_SEPOLIA,
                        "payTo": "0x" + "11" * 20, "maxTimeoutSeconds": 60,
                        "extra": {"name": "USDC", "version": "2"}}
                header = self.headers.get("X-PAYMENT" if version == 1 else "PAYMENT-SIGNATURE")
                if header is None:
                    return self._require(version, url, requirements, "payment required")
                payload = unb64(header)
                check = {"x402Version": version, "paymentPayload": payload,
                         "paymentRequirements": requirements}
                verified = httpx.post(facilitator.url + "/verify", json=check, timeout=10).json()
                if not verified["isValid"]:
                    return self._require(version, url, requirements, verified["invalidReason"])
                settled = httpx.post(facilitator.url + "/settle", json=check, timeout=10).json()
                resource.served.append(self.path)
                data = json.dumps({"data": "the paid content"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-PAYMENT-RESPONSE" if version == 1 else "PAYMENT-RESPONSE",
                                 b64(settled))
                self.end_headers()
                self.wfile.write(data)

            def _require(self, version: int, url: str, requirements: Dict[str, Any],
                         error: str) -> None:
                if version == 1:
                    data = json.dumps({"x402Version": 1, "error": error,
                                       "accepts": [requirements]}).encode()
                    header: Optional[str] = None
                else:
                    data = b"{}"
                    header = b64({"x402Version": 2, "error": error, "accepts": [requirements],
                                  "resource": {"url": url, "description": "market data",
                                               "mimeType": "application/json"}},
                                 urlsafe=self.path == "/v2/exact-url")
                self.send_response(402)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if header:
                    self.send_header("PAYMENT-REQUIRED", header)
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler)
