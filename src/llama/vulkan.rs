//! The Vulkan driver's account of its devices (through `ash`, which loads the system's
//! Vulkan loader at run time): each device's type, which ggml does not report (a
//! CPU-type device such as lavapipe looks like a GPU to it), and its driver's name and
//! version. Only in a GPU check's child process (`probe`), where a broken driver can
//! crash without taking the app with it.

use super::probe::DeviceKind;

/// One Vulkan physical device.
#[derive(Clone, Debug)]
pub(crate) struct Physical {
    pub(crate) name: String,
    pub(crate) kind: DeviceKind,
    /// `<driver name> <driver info>` (`llvmpipe Mesa 22.3.6 (LLVM 15.0.6)`,
    /// `NVIDIA 550.54.14`).
    pub(crate) driver: String,
}

/// A name field's text: up to its NUL, or nothing when the driver left none.
fn text(name: Result<&std::ffi::CStr, std::ffi::FromBytesUntilNulError>) -> String {
    name.map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The physical devices, or none when there is no Vulkan loader or instance.
pub(crate) fn physical_devices() -> Vec<Physical> {
    // SAFETY: loads the system's Vulkan loader (libvulkan.so.1, vulkan-1.dll); ash keeps
    // it loaded for the life of `entry`, which outlives every call below.
    let Ok(entry) = (unsafe { ash::Entry::load() }) else {
        return Vec::new();
    };
    let app = ash::vk::ApplicationInfo::default().api_version(ash::vk::API_VERSION_1_2);
    let info = ash::vk::InstanceCreateInfo::default().application_info(&app);
    // SAFETY: `info` and what it points to live across the call.
    let Ok(instance) = (unsafe { entry.create_instance(&info, None) }) else {
        return Vec::new();
    };
    // SAFETY: `instance` is live until destroyed at the end; each device handle comes
    // from it; the driver properties struct is chained for the call only.
    let devices = unsafe {
        instance
            .enumerate_physical_devices()
            .unwrap_or_default()
            .into_iter()
            .map(|pd| {
                let p = instance.get_physical_device_properties(pd);
                // The driver's name and version: Vulkan 1.2's driver properties, which
                // only a 1.2 device fills.
                let driver = if p.api_version >= ash::vk::API_VERSION_1_2 {
                    let mut driver = ash::vk::PhysicalDeviceDriverProperties::default();
                    let mut props =
                        ash::vk::PhysicalDeviceProperties2::default().push_next(&mut driver);
                    instance.get_physical_device_properties2(pd, &mut props);
                    format!(
                        "{} {}",
                        text(driver.driver_name_as_c_str()),
                        text(driver.driver_info_as_c_str())
                    )
                    .trim()
                    .to_string()
                } else {
                    String::new()
                };
                let kind = match p.device_type {
                    ash::vk::PhysicalDeviceType::CPU => DeviceKind::Cpu,
                    ash::vk::PhysicalDeviceType::INTEGRATED_GPU => DeviceKind::Igpu,
                    _ => DeviceKind::Gpu,
                };
                Physical {
                    name: text(p.device_name_as_c_str()),
                    kind,
                    driver,
                }
            })
            .collect()
    };
    // SAFETY: nothing made from `instance` is still in use.
    unsafe { instance.destroy_instance(None) };
    devices
}
