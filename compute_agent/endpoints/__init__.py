"""The RPC surface: the endpoint objects both RPC servers dispatch to.

Each endpoint class holds the versioned methods of one area, marked
remotable; each method validates its arguments and delegates to a flow
(lifecycle, rescue and shelve, live and cold migration) or a registry.
Nothing else is reachable on the bus (rpc.RemotableOnlyPolicy).
"""

# Keep in step with compute_agent.rpcapi (a unit test checks it).
RPC_API_VERSION = '1.5'
SERVICE_VERSION = 6
