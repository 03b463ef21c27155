/** What this package is called and how to install it: the install hint of its providers' errors. */
export const cpuPackage = "@peftkit/backend-cpu"
export const cpuPackageInstall = "npm install @peftkit/backend-cpu"
