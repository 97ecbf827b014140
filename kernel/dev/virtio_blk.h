// The one disk: a virtio block device (virtio 1.2, section 5.2), found among the virtio-mmio
// transports of QEMU's microvm (modern v2 or legacy v1) or on PCI bus 0 (the legacy I/O-port
// interface of a transitional virtio-blk-pci: QEMU's pc). One split virtqueue, polled, one request
// at a time through a bounce buffer: the kernel is never preempted, so calls never overlap.
#pragma once
#include <stdint.h>

namespace bf::kern {

enum class BlkTransport : uint8_t { MmioModern, MmioLegacy, PciLegacy };
enum class BlkState : uint8_t {
  Absent,  // no virtio-blk device (or it failed to initialize: logged)
  Ready,
  Broken,  // a request timed out or the device asked for a reset: every later call is -EIO
};

struct BlkInfo {
  BlkState state;
  BlkTransport transport;
  uint64_t capacity;  // bytes, a multiple of 512
  bool read_only;     // VIRTIO_BLK_F_RO
  bool flush;         // VIRTIO_BLK_F_FLUSH negotiated: the device has a write cache to flush
};

void blk_init();  // probes PCI, then virtio-mmio; logs one line for what it found
const BlkInfo& blk_info();

// Byte-granular I/O within [0, capacity) on memory the kernel can reach (user buffers already
// checked by the caller). Returns 0 or -EIO (-EROFS for a write to a read-only disk).
int64_t blk_read(uint64_t off, void* dst, uint64_t n);
int64_t blk_write(uint64_t off, const void* src, uint64_t n);
// Makes every completed write durable (VIRTIO_BLK_T_FLUSH). 0 when the device has no write cache.
int64_t blk_flush();

}  // namespace bf::kern
