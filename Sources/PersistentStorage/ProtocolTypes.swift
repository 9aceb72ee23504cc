// The wire types that are part of this library's API, declared once in the
// protocol module, which the daemon shares; the rest of it stays internal.
@_exported import struct PersistentStorageProtocol.DaemonState
@_exported import struct PersistentStorageProtocol.StorageStatus
