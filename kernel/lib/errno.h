// Linux errno values (the application sees the Linux ABI).
#pragma once

namespace bf::kern {
enum : int {
  EPERM = 1, ENOENT = 2, ESRCH = 3, EINTR = 4, EIO = 5, EBADF = 9, EAGAIN = 11, ENOMEM = 12, EACCES = 13,
  EFAULT = 14, EEXIST = 17, ENODEV = 19, ENOTDIR = 20, EISDIR = 21, EINVAL = 22, EMFILE = 24, ENOTTY = 25, EFBIG = 27, ENOSPC = 28, ESPIPE = 29,
  EROFS = 30, ERANGE = 34, ENAMETOOLONG = 36, ENOSYS = 38, ETIMEDOUT = 110,
};
}  // namespace bf::kern
