/** What the native addon was built with, which backend runs the ops, and why. */
import type { NativeBackendInfo } from '../types/binding.js'
import { native } from './native.js'

export type BackendInfo = NativeBackendInfo

export function info(): BackendInfo {
  return native().backendInfo()
}
