// The built-in task library: turns the LTSP part of the config into task nodes.
import type { Graph, ResourceDef, Roots, TaskDef } from "../src/types.ts";
import type { LtspConfig } from "./config.ts";
import { hostGraph, imageServing, planHosts } from "./hosts.ts";
import { imageTasks, mountSweeper } from "./image.ts";
import { planImages } from "./images.ts";
import { initrdTask } from "./initrd.ts";
import { ipxeBinariesTask, ipxeMenuTask } from "./ipxe.ts";
import { kernelTask } from "./kernel.ts";
import { dnsmasqTask, nbdTask, nfsTask, reloadTasks, wantsNbd } from "./server-configs.ts";

export function builtinGraph(config: LtspConfig, roots: Roots): Graph {
  const images = planImages(config, roots);
  const tasks: TaskDef[] = [];
  const resources: ResourceDef<any>[] = [];
  for (const image of images) {
    if (image.entries) {
      const built = imageTasks(image, roots);
      tasks.push(...built.tasks);
      resources.push(...built.resources);
    }
    tasks.push(kernelTask(image, roots));
  }
  const hosts = planHosts(config, images);
  if (hosts.length > 0) {
    // Split deployment: this machine builds; the hosts serve (chroots stay here, off the menu).
    if (config.initrd?.enabled !== false) tasks.push(initrdTask(config, roots));
    const served = imageServing(config, hosts, images);
    tasks.push(ipxeMenuTask({ ...config, ipxe: { ...config.ipxe, chroots: false } }, roots, images, served), ipxeBinariesTask(roots));
    const remote = hostGraph({ config, roots, images, hosts, serving: served, built: new Map(tasks.map((t) => [t.id, t])) });
    tasks.push(...remote.tasks);
    resources.push(...remote.resources);
    return { tasks, resources, sweepers: [mountSweeper()], resourceClasses: { squash: 1 } };
  }
  const serving = { dnsmasq: config.dnsmasq?.enabled !== false, nfs: config.nfs?.enabled !== false, nbd: wantsNbd(config, images) };
  if (config.initrd?.enabled !== false) tasks.push(initrdTask(config, roots));
  tasks.push(ipxeMenuTask(config, roots, images), ipxeBinariesTask(roots));
  if (serving.nfs) tasks.push(nfsTask(config, roots));
  if (serving.dnsmasq) tasks.push(dnsmasqTask(config, roots));
  if (serving.nbd) tasks.push(nbdTask(config, roots, images));
  tasks.push(...reloadTasks(config, roots, serving));
  return { tasks, resources, sweepers: [mountSweeper()], resourceClasses: { squash: 1 } };
}
