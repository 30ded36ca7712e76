"""httpcore's connection pool with its bookkeeping pass made linear in the number of connections.

httpcore 1.0.x runs `_assign_requests_to_connections` whenever a request joins or leaves the pool.
Its keep-alive check counts the pool's connections by building a list of all of them once per
idle connection (`len([c.is_idle() for c in self._connections])`, which is just the pool's size),
so each pass costs connections x idle connections calls: with the 32 model calls a worker makes at
once, ~560 `is_idle` calls per pass, two passes per model call (encode/httpcore#1035; fixed in
httpx2, pydantic/httpx2#974, which openai 3 uses and this project does not yet: STYLE.md §8).
`LinearPool` is the same method with that count taken once per connection and the idle list only
built when it is used: the same decisions, in the same order.
"""

from __future__ import annotations

import httpcore
import httpx

__all__ = ["LinearPool", "use_linear_pool"]


class LinearPool(httpcore.AsyncConnectionPool):
    """httpcore.AsyncConnectionPool whose assignment pass does not rescan the pool per connection."""

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        closing_connections = []

        # Closed, expired and surplus idle connections leave the pool (httpcore's order and tests).
        for connection in list(self._connections):
            if connection.is_closed():
                self._connections.remove(connection)
            elif connection.has_expired() or (
                connection.is_idle() and len(self._connections) > self._max_keepalive_connections
            ):
                self._connections.remove(connection)
                closing_connections.append(connection)

        # Queued requests get a connection: an available one, a new one, or one made room for.
        queued_requests = [request for request in self._requests if request.is_queued()]
        for pool_request in queued_requests:
            origin = pool_request.request.url.origin
            available_connections = [
                connection
                for connection in self._connections
                if connection.can_handle_request(origin) and connection.is_available()
            ]
            if available_connections:
                pool_request.assign_to_connection(available_connections[0])
            elif len(self._connections) < self._max_connections:
                connection = self.create_connection(origin)
                self._connections.append(connection)
                pool_request.assign_to_connection(connection)
            else:
                idle = next((connection for connection in self._connections if connection.is_idle()), None)
                if idle is not None:
                    self._connections.remove(idle)
                    closing_connections.append(idle)
                    connection = self.create_connection(origin)
                    self._connections.append(connection)
                    pool_request.assign_to_connection(connection)

        return closing_connections


def use_linear_pool(client: httpx.AsyncClient) -> bool:
    """Make `client`'s default transport use LinearPool; False (nothing changed) for any other set-up.

    Only httpx's own transport over httpcore 1.0's own pool is switched: the class is swapped in
    place, so the pool keeps the limits, TLS and timeouts the client gave it.
    """
    transport = getattr(client, "_transport", None)
    pool = getattr(transport, "_pool", None)
    if not isinstance(transport, httpx.AsyncHTTPTransport) or type(pool) is not httpcore.AsyncConnectionPool:
        return False
    if not httpcore.__version__.startswith("1.0."):
        return False
    pool.__class__ = LinearPool
    return True
