"""MQTT output (paho-mqtt): publish each verdict and wait for the broker's acknowledgement before calling it sent."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from loupe.floor.outputs.base import OutputError


class MqttSink:
    """One connection, made on first send and remade after any failure; QoS 1 by default (at least once)."""

    name = "mqtt"

    def __init__(
        self,
        url: str,
        topic: str = "loupe/{task}/verdict",
        qos: int = 1,
        retain: bool = False,
        client_id: str = "",
        timeout_s: float = 5.0,
        password: str | None = None,
    ) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 1883
        self.username, self.password = parts.username, password if password is not None else parts.password
        self.topic, self.qos, self.retain, self.timeout_s = topic, qos, retain, float(timeout_s)
        self.client_id = client_id or f"loupe-{uuid.uuid4().hex[:8]}"
        self.destination = f"mqtt://{self.host}:{self.port}/{topic}"
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()

    def _connect(self) -> mqtt.Client:
        if self._client is not None and self._client.is_connected():
            return self._client
        self._reset()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id)
        if self.username:
            client.username_pw_set(self.username, self.password)
        client.on_connect = lambda c, userdata, flags, rc, props: self._connected.set() if not rc.is_failure else None
        self._connected.clear()
        try:
            client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise OutputError(f"mqtt {self.host}:{self.port}: {exc.strerror or exc}") from None
        client.loop_start()
        self._client = client
        if not self._connected.wait(self.timeout_s):
            self._reset()
            raise OutputError(f"mqtt {self.host}:{self.port}: the broker did not accept the connection")
        return client

    def send(self, payload: dict[str, Any]) -> None:
        client = self._connect()
        topic = self.topic.format(task=payload.get("task", "task"), verdict=payload.get("verdict", ""))
        info = client.publish(topic, json.dumps(payload, ensure_ascii=False), qos=self.qos, retain=self.retain)
        try:
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise OutputError(f"mqtt {self.host}:{self.port}: {mqtt.error_string(info.rc)}")
            info.wait_for_publish(self.timeout_s)
            if not info.is_published():
                raise OutputError(f"mqtt {self.host}:{self.port}: no acknowledgement within {self.timeout_s:g} s")
        except (RuntimeError, ValueError) as exc:  # paho: connection lost / queue full while waiting
            self._reset()
            raise OutputError(f"mqtt {self.host}:{self.port}: {exc}") from None
        except OutputError:
            self._reset()
            raise

    def _reset(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def close(self) -> None:
        self._reset()
