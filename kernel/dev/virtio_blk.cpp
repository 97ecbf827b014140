#include "kernel/dev/virtio_blk.h"

#include "kernel/arch/timer.h"
#include "kernel/arch/x86.h"
#include "kernel/lib/errno.h"
#include "kernel/lib/kstring.h"
#include "kernel/lib/layout.h"
#include "kernel/lib/log.h"
#include "kernel/mm/phys.h"
#include "kernel/mm/vm.h"

namespace bf::kern {
namespace {

// ---- the split virtqueue (virtio 1.2, 2.7) and the block request (5.2.6) -----------------------

struct VirtqDesc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(VirtqDesc) == 16);
struct VirtqUsedElem {
  uint32_t id;
  uint32_t len;
};
static_assert(sizeof(VirtqUsedElem) == 8);
struct BlkReqHeader {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};
static_assert(sizeof(BlkReqHeader) == 16);

constexpr uint16_t kDescNext = 1, kDescWrite = 2;  // WRITE: the device writes this buffer
constexpr uint16_t kAvailNoInterrupt = 1;
constexpr uint32_t kReqIn = 0, kReqOut = 1, kReqFlush = 4;
constexpr uint8_t kReqOk = 0;
constexpr uint8_t kStAcknowledge = 1, kStDriver = 2, kStDriverOk = 4, kStFeaturesOk = 8, kStNeedsReset = 64,
                  kStFailed = 128;
constexpr int kFeatRo = 5, kFeatFlush = 9, kFeatVersion1 = 32;
constexpr uint64_t kSector = 512;
constexpr uint64_t kBounceBytes = 128 << 10;            // the largest transfer of one request
constexpr uint64_t kRequestTimeoutNs = 30'000'000'000;  // a device that answers nothing in 30 s is broken
constexpr uint32_t kMaxQueue = 1024;                    // legacy PCI imposes its size; refuse absurd ones

// ---- transports --------------------------------------------------------------------------------

// virtio-mmio registers (4.2.2); microvm puts its transports 512 bytes apart from 0xfeb00000.
constexpr uint64_t kMmioBase = 0xfeb00000, kMmioStride = 0x200;
constexpr int kMmioSlots = 32;
constexpr uint32_t kMmioMagicValue = 0x74726976;  // "virt"
enum MmioReg : uint32_t {
  kMagic = 0x000, kVersion = 0x004, kDeviceId = 0x008, kDeviceFeatures = 0x010, kDeviceFeaturesSel = 0x014,
  kDriverFeatures = 0x020, kDriverFeaturesSel = 0x024, kGuestPageSize = 0x028, kQueueSel = 0x030,
  kQueueNumMax = 0x034, kQueueNum = 0x038, kQueueAlign = 0x03c, kQueuePfn = 0x040, kQueueReady = 0x044,
  kQueueNotify = 0x050, kStatus = 0x070, kQueueDescLow = 0x080, kQueueDescHigh = 0x084,
  kQueueDriverLow = 0x090, kQueueDriverHigh = 0x094, kQueueDeviceLow = 0x0a0, kQueueDeviceHigh = 0x0a4,
  kConfigGeneration = 0x0fc, kConfig = 0x100,
};

// Legacy virtio-pci I/O BAR (4.1.4.8): the header, then the device config when MSI-X is off.
enum PciLegacyReg : uint16_t {
  kPciDeviceFeatures = 0x00, kPciDriverFeatures = 0x04, kPciQueuePfn = 0x08, kPciQueueSize = 0x0c,
  kPciQueueSel = 0x0e, kPciQueueNotify = 0x10, kPciStatus = 0x12, kPciConfig = 0x14,
};
constexpr uint16_t kPciVendorVirtio = 0x1af4, kPciDeviceBlkTransitional = 0x1001, kPciDeviceBlkModern = 0x1042;

uint32_t pci_read32(unsigned dev, unsigned reg) {
  x86::outl(0xcf8, 0x80000000u | (dev << 11) | (reg & 0xfc));
  return x86::inl(0xcfc);
}
void pci_write32(unsigned dev, unsigned reg, uint32_t v) {
  x86::outl(0xcf8, 0x80000000u | (dev << 11) | (reg & 0xfc));
  x86::outl(0xcfc, v);
}

struct Disk {
  BlkInfo info{BlkState::Absent, BlkTransport::MmioModern, 0, false, false};
  volatile uint8_t* mmio = nullptr;  // the transport's registers (mmio)
  uint16_t io = 0;                   // the I/O BAR (PCI)
  uint32_t qsize = 0;
  VirtqDesc* desc = nullptr;
  volatile uint16_t* avail = nullptr;  // flags, idx, ring[qsize]
  volatile uint16_t* used = nullptr;   // flags, idx, then VirtqUsedElem ring[qsize]
  uint16_t next_avail = 0, seen_used = 0;
  BlkReqHeader* req = nullptr;  // and the status byte right after it, in one page
  volatile uint8_t* status = nullptr;
  uint8_t* bounce = nullptr;
  uint64_t req_phys = 0, bounce_phys = 0;
};
Disk g;

uint32_t mr(uint32_t reg) { return *reinterpret_cast<volatile uint32_t*>(g.mmio + reg); }
void mw(uint32_t reg, uint32_t v) { *reinterpret_cast<volatile uint32_t*>(g.mmio + reg) = v; }

uint8_t get_status() {
  return g.info.transport == BlkTransport::PciLegacy ? x86::inb(uint16_t(g.io + kPciStatus)) : uint8_t(mr(kStatus));
}
void set_status(uint8_t s) {
  if (g.info.transport == BlkTransport::PciLegacy) x86::outb(uint16_t(g.io + kPciStatus), s);
  else mw(kStatus, s);
}

uint64_t device_features() {
  switch (g.info.transport) {
    case BlkTransport::PciLegacy: return x86::inl(uint16_t(g.io + kPciDeviceFeatures));
    case BlkTransport::MmioLegacy: mw(kDeviceFeaturesSel, 0); return mr(kDeviceFeatures);
    case BlkTransport::MmioModern: {
      mw(kDeviceFeaturesSel, 1);
      const uint64_t hi = mr(kDeviceFeatures);
      mw(kDeviceFeaturesSel, 0);
      return hi << 32 | mr(kDeviceFeatures);
    }
  }
  return 0;
}
void driver_features(uint64_t f) {
  if (g.info.transport == BlkTransport::PciLegacy) {
    x86::outl(uint16_t(g.io + kPciDriverFeatures), uint32_t(f));
    return;
  }
  mw(kDriverFeaturesSel, 0), mw(kDriverFeatures, uint32_t(f));
  mw(kDriverFeaturesSel, 1), mw(kDriverFeatures, uint32_t(f >> 32));
}

uint64_t config_capacity_sectors() {
  if (g.info.transport == BlkTransport::PciLegacy)
    return uint64_t(x86::inl(uint16_t(g.io + kPciConfig + 4))) << 32 | x86::inl(uint16_t(g.io + kPciConfig));
  for (int tries = 0; tries < 100; ++tries) {  // modern: reread while the config generation moves
    const uint32_t gen = g.info.transport == BlkTransport::MmioModern ? mr(kConfigGeneration) : 0;
    const uint64_t v = uint64_t(mr(kConfig + 4)) << 32 | mr(kConfig);
    if (g.info.transport != BlkTransport::MmioModern || mr(kConfigGeneration) == gen) return v;
  }
  return 0;
}

void notify() {
  x86::mfence();
  if (g.info.transport == BlkTransport::PciLegacy) x86::outw(uint16_t(g.io + kPciQueueNotify), 0);
  else mw(kQueueNotify, 0);
}

// Ring layout of a legacy queue (2.7.2 "Legacy Interfaces"): descriptors, the available ring, then
// the used ring at the next 4 KiB boundary. Modern transports accept the same placement.
uint64_t used_offset(uint32_t q) { return align_up(16ull * q + 6 + 2ull * q, kPageSize); }
uint64_t queue_bytes(uint32_t q) { return align_up(used_offset(q) + 6 + 8ull * q, kPageSize); }

// Brings the device up (3.1.1); on failure returns why, and the device is left FAILED.
const char* init_device() {
  set_status(0);  // reset
  set_status(kStAcknowledge);
  set_status(kStAcknowledge | kStDriver);
  const uint64_t offered = device_features();
  const bool modern = g.info.transport == BlkTransport::MmioModern;
  if (modern && !(offered >> kFeatVersion1 & 1)) return "a modern transport without VIRTIO_F_VERSION_1";
  uint64_t want = offered & (1ull << kFeatRo | 1ull << kFeatFlush);
  if (modern) want |= 1ull << kFeatVersion1;
  driver_features(want);
  uint8_t st = kStAcknowledge | kStDriver;
  if (modern) {
    set_status(st |= kStFeaturesOk);
    if (!(get_status() & kStFeaturesOk)) return "the device refused the features";
  }
  g.info.read_only = want >> kFeatRo & 1;
  g.info.flush = want >> kFeatFlush & 1;

  uint32_t max = 0;
  if (g.info.transport == BlkTransport::PciLegacy) {
    x86::outw(uint16_t(g.io + kPciQueueSel), 0);
    max = x86::inw(uint16_t(g.io + kPciQueueSize));
    g.qsize = max;  // legacy PCI: the device's size is the size
  } else {
    mw(kQueueSel, 0);
    if (modern && mr(kQueueReady)) return "queue 0 is already live";
    max = mr(kQueueNumMax);
    g.qsize = max < 16 ? max : 16;  // one request in flight needs 3 descriptors
  }
  if (g.qsize < 3 || g.qsize > kMaxQueue || (g.qsize & (g.qsize - 1))) return "no usable queue 0";

  const uint64_t qb = queue_bytes(g.qsize);
  const uint64_t qphys = phys_alloc_zeroed(qb, kPageSize);
  const uint64_t rphys = phys_alloc_zeroed(kPageSize, kPageSize);
  const uint64_t bphys = phys_alloc_zeroed(kBounceBytes, kPageSize);
  if (!qphys || !rphys || !bphys) return "out of memory for its queue";
  // The legacy interfaces take a 32-bit page frame number.
  if (!modern && (qphys + qb) >> 44) return "its queue lies above what a legacy device can address";
  g.desc = static_cast<VirtqDesc*>(phys_to_ptr(qphys));
  g.avail = reinterpret_cast<volatile uint16_t*>(static_cast<uint8_t*>(phys_to_ptr(qphys)) + 16ull * g.qsize);
  g.used = reinterpret_cast<volatile uint16_t*>(static_cast<uint8_t*>(phys_to_ptr(qphys)) + used_offset(g.qsize));
  g.req = static_cast<BlkReqHeader*>(phys_to_ptr(rphys));
  g.status = static_cast<volatile uint8_t*>(phys_to_ptr(rphys + sizeof(BlkReqHeader)));
  g.bounce = static_cast<uint8_t*>(phys_to_ptr(bphys));
  g.req_phys = rphys, g.bounce_phys = bphys;
  g.avail[0] = kAvailNoInterrupt;  // polled: no interrupts wanted

  switch (g.info.transport) {
    case BlkTransport::PciLegacy: x86::outl(uint16_t(g.io + kPciQueuePfn), uint32_t(qphys >> 12)); break;
    case BlkTransport::MmioLegacy:
      mw(kGuestPageSize, uint32_t(kPageSize));
      mw(kQueueNum, g.qsize);
      mw(kQueueAlign, uint32_t(kPageSize));
      mw(kQueuePfn, uint32_t(qphys >> 12));
      break;
    case BlkTransport::MmioModern: {
      const uint64_t d = qphys, a = qphys + 16ull * g.qsize, u = qphys + used_offset(g.qsize);
      mw(kQueueNum, g.qsize);
      mw(kQueueDescLow, uint32_t(d)), mw(kQueueDescHigh, uint32_t(d >> 32));
      mw(kQueueDriverLow, uint32_t(a)), mw(kQueueDriverHigh, uint32_t(a >> 32));
      mw(kQueueDeviceLow, uint32_t(u)), mw(kQueueDeviceHigh, uint32_t(u >> 32));
      mw(kQueueReady, 1);
      break;
    }
  }
  g.info.capacity = config_capacity_sectors() * kSector;
  if (g.info.capacity == 0 || g.info.capacity >> 60) return "an empty or absurd capacity";
  set_status(st | kStDriverOk);
  if (get_status() & (kStNeedsReset | kStFailed)) return "the device failed at DRIVER_OK";
  g.info.state = BlkState::Ready;
  return nullptr;
}

bool find_pci() {
  // Without PCI (microvm) every read of the configuration data port gives all ones.
  for (unsigned dev = 0; dev < 32; ++dev) {
    const uint32_t id = pci_read32(dev, 0);
    if ((id & 0xffff) != kPciVendorVirtio) continue;
    const uint16_t did = uint16_t(id >> 16);
    if (did == kPciDeviceBlkModern) {
      klog("disk: PCI slot %u is a modern-only virtio-blk (disable-legacy=on): not supported, use a transitional one", dev);
      continue;
    }
    if (did != kPciDeviceBlkTransitional) continue;
    const uint32_t bar0 = pci_read32(dev, 0x10);
    if (!(bar0 & 1)) continue;  // legacy needs its I/O BAR
    pci_write32(dev, 0x04, (pci_read32(dev, 0x04) & 0xffff) | 0x5);  // I/O space + bus master
    g.info.transport = BlkTransport::PciLegacy;
    g.io = uint16_t(bar0 & 0xfffc);
    return true;
  }
  return false;
}

bool find_mmio() {
  auto* regs = static_cast<volatile uint8_t*>(vm_map_device(kMmioBase, kMmioSlots * kMmioStride));
  if (!regs) return false;
  for (int i = 0; i < kMmioSlots; ++i) {
    g.mmio = regs + i * kMmioStride;
    if (mr(kMagic) != kMmioMagicValue || mr(kDeviceId) != 2) continue;
    const uint32_t v = mr(kVersion);
    if (v != 1 && v != 2) continue;
    g.info.transport = v == 2 ? BlkTransport::MmioModern : BlkTransport::MmioLegacy;
    return true;
  }
  g.mmio = nullptr;
  return false;
}

const char* transport_name(BlkTransport t) {
  switch (t) {
    case BlkTransport::MmioModern: return "virtio-mmio (modern)";
    case BlkTransport::MmioLegacy: return "virtio-mmio (legacy)";
    case BlkTransport::PciLegacy: return "virtio-pci (legacy)";
  }
  return "?";
}

int64_t broken(const char* why) {
  klog("disk: %s; the disk is unusable until the next boot", why);
  g.info.state = BlkState::Broken;
  return -EIO;
}

// One request: header, optional data (len bytes of the bounce buffer from boff), status. Polls the
// used ring.
int64_t request(uint32_t type, uint64_t sector, uint32_t len, uint64_t boff = 0) {
  if (g.info.state != BlkState::Ready) return -EIO;
  KASSERT(boff + len <= kBounceBytes && len % kSector == 0);
  *g.req = {type, 0, sector};
  *g.status = 0xff;
  const uint64_t status_phys = g.req_phys + sizeof(BlkReqHeader);
  g.desc[0] = {g.req_phys, sizeof(BlkReqHeader), kDescNext, 1};
  if (len) {
    g.desc[1] = {g.bounce_phys + boff, len, uint16_t(kDescNext | (type == kReqIn ? kDescWrite : 0)), 2};
    g.desc[2] = {status_phys, 1, kDescWrite, 0};
  } else {
    g.desc[1] = {status_phys, 1, kDescWrite, 0};
  }
  g.avail[2 + g.next_avail % g.qsize] = 0;  // the chain starts at descriptor 0
  x86::mfence();
  g.avail[1] = ++g.next_avail;
  notify();
  const uint64_t deadline = monotonic_ns() + kRequestTimeoutNs;
  while (g.used[1] == g.seen_used) {
    if (monotonic_ns() > deadline) return broken("a request got no answer in 30 s");
    asm volatile("pause");
  }
  x86::mfence();
  ++g.seen_used;
  if (get_status() & kStNeedsReset) return broken("the device needs a reset");
  if (*g.status != kReqOk) {
    klog("disk: request type %u at sector %lu failed with status %u", type, sector, unsigned(*g.status));
    return -EIO;
  }
  return 0;
}

bool in_range(uint64_t off, uint64_t n) { return off <= g.info.capacity && n <= g.info.capacity - off; }

}  // namespace

void blk_init() {
  if (!find_pci() && !find_mmio()) return;
  if (const char* err = init_device()) {
    set_status(kStFailed);
    g.info.state = BlkState::Absent;
    klog("disk: %s device: %s; booting without a disk", transport_name(g.info.transport), err);
    return;
  }
  klog("disk: %s, %lu MiB%s%s", transport_name(g.info.transport), g.info.capacity >> 20,
       g.info.flush ? ", write cache flushed on fsync" : ", no write cache", g.info.read_only ? ", read-only" : "");
}

const BlkInfo& blk_info() { return g.info; }

int64_t blk_read(uint64_t off, void* dst, uint64_t n) {
  if (!in_range(off, n)) return -EIO;
  uint8_t* out = static_cast<uint8_t*>(dst);
  while (n > 0) {
    const uint64_t head = off % kSector;
    const uint64_t k = n < kBounceBytes - head ? n : kBounceBytes - head;
    const int64_t r = request(kReqIn, off / kSector, uint32_t(align_up(head + k, kSector)));
    if (r < 0) return r;
    memcpy(out, g.bounce + head, k);
    out += k, off += k, n -= k;
  }
  return 0;
}

int64_t blk_write(uint64_t off, const void* src, uint64_t n) {
  if (!in_range(off, n)) return -EIO;
  if (g.info.read_only) return -EROFS;
  const uint8_t* in = static_cast<const uint8_t*>(src);
  while (n > 0) {
    const uint64_t head = off % kSector;
    const uint64_t k = n < kBounceBytes - head ? n : kBounceBytes - head;
    const uint64_t span = align_up(head + k, kSector);
    const uint64_t first = off / kSector, last = first + span / kSector - 1;
    // A partial first or last sector keeps the bytes around the write: read it in first.
    if (head) {
      if (const int64_t r = request(kReqIn, first, uint32_t(kSector)); r < 0) return r;
    }
    if ((head + k) % kSector && (last != first || !head)) {
      if (const int64_t r = request(kReqIn, last, uint32_t(kSector), span - kSector); r < 0) return r;
    }
    memcpy(g.bounce + head, in, k);
    if (const int64_t r = request(kReqOut, first, uint32_t(span)); r < 0) return r;
    in += k, off += k, n -= k;
  }
  return 0;
}

int64_t blk_flush() {
  if (g.info.state != BlkState::Ready) return -EIO;
  return g.info.flush ? request(kReqFlush, 0, 0) : 0;
}

}  // namespace bf::kern
